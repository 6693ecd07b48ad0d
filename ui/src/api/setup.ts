// The setup wizard's endpoints (GET /api/v1/setup/platform, POST /api/v1/setup/firewall).
// Shapes are generated from crates/flm-proxy/src/ui_api/setup.rs and flm_core::firewall.
import { api as appApi, type Api } from './client';

import type { FirewallRequest, FirewallScript, FirewallTarget, PlatformView } from './generated';

export type { FirewallRequest, FirewallScript, FirewallTarget, FirewallToolView, FirewallWarning, PlatformView } from './generated';

// A record, not a list, so that tsc fails when the daemon gains a target the wizard does not offer.
const TARGET_SET: Record<FirewallTarget, true> = { ufw: true, firewalld: true, nftables: true, pf: true, powershell: true };
export const FIREWALL_TARGETS = Object.keys(TARGET_SET) as readonly FirewallTarget[];

export function setupApi(client: Api = appApi) {
  return {
    platform: async () => (await (await client.raw('GET', '/api/v1/setup/platform')).json()) as PlatformView,
    firewall: async (req: FirewallRequest) => (await (await client.raw('POST', '/api/v1/setup/firewall', req)).json()) as FirewallScript,
  };
}

export type SetupApi = ReturnType<typeof setupApi>;
