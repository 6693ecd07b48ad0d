// The setup wizard's endpoints (GET /api/v1/setup/platform, POST /api/v1/setup/firewall).
// Shapes mirror crates/flm-proxy/src/ui_api/setup.rs and flm_core::firewall.
import { api as appApi, type Api } from './client';

export const FIREWALL_TARGETS = ['ufw', 'firewalld', 'nftables', 'pf', 'powershell'] as const;
export type FirewallTarget = (typeof FIREWALL_TARGETS)[number];

export interface FirewallToolView {
  target: FirewallTarget;
  available: boolean;
  path: string | null;
}

export interface PlatformView {
  os: string;
  arch: string;
  firewalls: FirewallToolView[];
  default_target: FirewallTarget | null;
}

export interface FirewallRequest {
  target: FirewallTarget;
  ports: number[];
  allow: string[];
}

export interface FirewallWarning {
  code: string;
  message: string;
}

export interface FirewallScript {
  target: FirewallTarget;
  shell: 'sh' | 'powershell';
  filename: string;
  script: string;
  rollback_filename: string;
  rollback: string;
  ports: number[];
  allow: string[];
  warnings: FirewallWarning[];
}

export function setupApi(client: Api = appApi) {
  return {
    platform: async () => (await (await client.raw('GET', '/api/v1/setup/platform')).json()) as PlatformView,
    firewall: async (req: FirewallRequest) => (await (await client.raw('POST', '/api/v1/setup/firewall', req)).json()) as FirewallScript,
  };
}

export type SetupApi = ReturnType<typeof setupApi>;
