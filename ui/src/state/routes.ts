// The app's routes (spec §2 plus /api-setup and /usage). A warning's fix_route that points
// at a screen this build does not have (e.g. the setup wizard) falls back to API setup.
export const ROUTES = ['/', '/api-setup', '/chat/tester', '/security/events', '/security/ip-blocklist', '/security/ip-whitelist', '/usage', '/models/comparison', '/settings'];

export function fixRoute(route: string): string {
  const path = route.split('#')[0] ?? route;
  return ROUTES.includes(path) ? route : '/api-setup#policy';
}
