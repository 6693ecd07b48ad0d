// The app's routes (spec §2 plus /api-setup and /usage).
export const ROUTES = ['/', '/api-setup', '/chat/tester', '/security/events', '/security/ip-blocklist', '/security/ip-whitelist', '/usage', '/models/profiles', '/prompts', '/models/comparison', '/settings', '/settings/alerts', '/setup'];

/** A warning's fix_route if this build has that screen (the wizard `/setup` included). */
export function fixRoute(route: string): string | null {
  const path = route.split('#')[0] ?? route;
  return ROUTES.includes(path) ? route : null;
}

/** Modes the app can start the server in (ACME needs e-mail and domain: CLI only). */
export const START_MODES = ['local-http', 'dev-selfsigned', 'packaged-ca'] as const;
