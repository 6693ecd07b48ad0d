// Pre-validation of IP / CIDR input for quick feedback; the daemon validates again.
const V4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

function isV6(s: string): boolean {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || !s.includes(':')) return false;
  try {
    new URL(`http://[${s}]/`);
    return true;
  } catch {
    return false;
  }
}

export function isIpOrCidr(input: string): boolean {
  const s = input.trim();
  if (!s) return false;
  const [addr, prefix, extra] = s.split('/');
  if (extra !== undefined || addr === undefined) return false;
  const v4 = V4.test(addr);
  const v6 = !v4 && isV6(addr);
  if (!v4 && !v6) return false;
  if (prefix === undefined) return true;
  if (!/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (v4 ? 32 : 128);
}
