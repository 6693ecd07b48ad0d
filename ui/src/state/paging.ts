import { useCallback, useState } from 'react';

/**
 * Keyset pagination over the daemon's opaque cursors: a stack of the cursors that led to
 * each page, so "previous" needs no offset.
 */
export function useCursorPager() {
  const [stack, setStack] = useState<(string | undefined)[]>([undefined]);
  const cursor = stack[stack.length - 1];
  const next = useCallback((c: string) => setStack((s) => [...s, c]), []);
  const prev = useCallback(() => setStack((s) => (s.length > 1 ? s.slice(0, -1) : s)), []);
  const reset = useCallback(() => setStack([undefined]), []);
  return { cursor, page: stack.length, hasPrev: stack.length > 1, next, prev, reset };
}
