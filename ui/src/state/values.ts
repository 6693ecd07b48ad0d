// Values the daemon sends as identifiers, shown in the user's language. Unknown ones
// (a newer daemon) stay as they are, marked as data.
import type { TFunction } from 'i18next';

export const CAPABILITIES = ['chat', 'chat_stream', 'embeddings', 'moderation', 'tools', 'reasoning', 'vision_inputs', 'audio_inputs', 'audio_outputs', 'transcription', 'image_generation'] as const;

/** Settings whose help text the app translates (`values.settingHelp.<key>`); others show the daemon's English help. */
export const HELPED_SETTINGS = [
  'engine.health_latency_threshold_ms',
  'engine.max_network_failures',
  'engine.detect_timeout_ms',
  'engine.request_timeout_secs',
  'engine.cache_ttl_secs',
  'engine.probe_default_ports',
  'proxy.port',
  'proxy.request_timeout_secs',
  'proxy.stream_timeout_secs',
  'proxy.max_body_bytes',
  'proxy.passthrough',
  'proxy.engine_check_interval_secs',
  'proxy.shutdown_grace_secs',
  'proxy.max_connections_per_ip',
  'proxy.send_timeout_secs',
  'audit.retention_days',
  'audit.max_db_mb',
  'audit.min_free_disk_mb',
  'preferred_language',
  'ui.port',
  'ui.theme',
  'alert_rules',
  'log.level',
  'log.access',
  'log.max_size_mb',
  'log.max_files',
  'paths.config',
] as const;

export function capabilityLabel(t: TFunction, c: string): string {
  return (CAPABILITIES as readonly string[]).includes(c) ? t(`values.capability.${c}`) : c;
}

export function capabilityList(t: TFunction, caps: readonly string[]): string {
  return caps.map((c) => capabilityLabel(t, c)).join(t('values.listSeparator'));
}

export function settingHelp(t: TFunction, key: string, fallback: string): string {
  return (HELPED_SETTINGS as readonly string[]).includes(key) ? t(`values.settingHelp.${key}`) : fallback;
}

/** Splits help text on backticks: odd parts are commands or identifiers (shown as code). */
export function codeParts(text: string): { code: boolean; text: string }[] {
  return text
    .split('`')
    .map((part, i) => ({ code: i % 2 === 1, text: part }))
    .filter((p) => p.text !== '');
}
