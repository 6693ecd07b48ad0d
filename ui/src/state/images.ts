export const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/webp'];
export const MAX_IMAGES = 5;
export const MAX_TOTAL_BYTES = 20 * 1024 * 1024;

export interface Attachment {
  name: string;
  size: number;
  url: string; // data URL; kept in memory only
}

export type ImageProblem = 'type' | 'count' | 'size' | null;

/** Checks new files against the limits together with those already attached. */
export function checkImages(existing: Attachment[], files: File[]): ImageProblem {
  if (files.some((f) => !IMAGE_TYPES.includes(f.type))) return 'type';
  if (existing.length + files.length > MAX_IMAGES) return 'count';
  const total = existing.reduce((s, a) => s + a.size, 0) + files.reduce((s, f) => s + f.size, 0);
  if (total > MAX_TOTAL_BYTES) return 'size';
  return null;
}

export function readDataUrl(file: File): Promise<Attachment> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve({ name: file.name, size: file.size, url: String(r.result) });
    r.onerror = () => reject(r.error ?? new Error('read failed'));
    r.readAsDataURL(file);
  });
}
