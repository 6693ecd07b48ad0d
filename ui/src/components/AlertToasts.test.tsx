// Alert notices: an `alert` event from the daemon's stream shows a notice with a link to the
// Security Events; ordinary ones leave after ~5 s, critical ones stay until dismissed.
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { act, fireEvent, render, screen } from '@testing-library/react';
import { MemoryRouter } from 'react-router-dom';
import i18n from '../i18n';
import { AlertToasts } from './AlertToasts';
import { ALERT_EVENT_TYPES, ALERT_SEVERITIES, draftsFromSetting, eventTypeKey, groupRuleErrors, settingFromDrafts, severityKey } from '../api/alerts';
import en from '../locales/en.json';
import ja from '../locales/ja.json';

type Handler = (ev: MessageEvent<string>) => void;
const handlers = new Map<string, Handler[]>();

class FakeEventSource {
  constructor(public url: string) {}
  addEventListener(kind: string, h: Handler) {
    handlers.set(kind, [...(handlers.get(kind) ?? []), h]);
  }
  close() {}
}

function emit(kind: string, data: unknown) {
  act(() => handlers.get(kind)?.forEach((h) => h(new MessageEvent(kind, { data: JSON.stringify(data) }))));
}

const ALERT = {
  rule_id: 'sqli', event_type: 'intrusion', severity: 'high', max_severity: 'high', count: 3, threshold: 3,
  window_secs: 60, suppressed: 0, message: '3 intrusion events within 60 s (threshold 3)', at: '2030-01-01T00:00:00Z', ip: '192.0.2.7',
};

beforeAll(() => {
  (globalThis as { EventSource?: unknown }).EventSource = FakeEventSource;
});
afterEach(() => vi.useRealTimers());

describe('alert notices', () => {
  it('shows an alert, links to Security Events, and leaves after 5 s', async () => {
    await i18n.changeLanguage('en');
    vi.useFakeTimers();
    render(
      <MemoryRouter>
        <AlertToasts />
      </MemoryRouter>,
    );
    emit('alert', ALERT);
    const toast = screen.getByRole('status');
    expect(toast.textContent).toContain('Alert: Unauthorized access (High)');
    expect(toast.textContent).toContain('3 matching events within 60 seconds.');
    expect(toast.textContent).toContain('192.0.2.7');
    expect(screen.getByRole('link', { name: 'View Security Events' }).getAttribute('href')).toBe('/security/events');
    act(() => vi.advanceTimersByTime(4900));
    expect(screen.queryByRole('status')).not.toBeNull();
    act(() => vi.advanceTimersByTime(200));
    expect(screen.queryByRole('status')).toBeNull();
  });

  it('keeps a critical alert until it is dismissed, and ignores malformed events', async () => {
    await i18n.changeLanguage('en');
    vi.useFakeTimers();
    render(
      <MemoryRouter>
        <AlertToasts />
      </MemoryRouter>,
    );
    emit('alert', { nope: true });
    expect(screen.queryByRole('status')).toBeNull();
    emit('alert', { ...ALERT, max_severity: 'critical' });
    act(() => vi.advanceTimersByTime(60_000));
    const toast = screen.getByRole('alert');
    expect(toast.textContent).toContain('Critical');
    fireEvent.click(screen.getByRole('button', { name: 'Dismiss alert of rule sqli' }));
    expect(screen.queryByRole('alert')).toBeNull();
  });
});

function has(o: unknown, key: string): boolean {
  let cur: unknown = o;
  for (const part of key.split('.')) {
    if (typeof cur !== 'object' || cur === null || !(part in cur)) return false;
    cur = (cur as Record<string, unknown>)[part];
  }
  return typeof cur === 'string';
}

describe('alert rules logic', () => {
  it('has every key built at run time in both languages', () => {
    const keys = [
      ...[...ALERT_EVENT_TYPES, 'x'].map(eventTypeKey),
      ...[...ALERT_SEVERITIES, 'x'].map(severityKey),
      ...['id', 'eventType', 'severity', 'threshold', 'windowSecs', 'cooldownSecs', 'enabled', 'notifyUI', 'notifyLog'].map((f) => `alertSettings.fields.${f}`),
    ];
    expect(keys.filter((k) => !has(en, k))).toEqual([]);
    expect(keys.filter((k) => !has(ja, k))).toEqual([]);
  });

  it('round-trips a document and files errors by rule and field', () => {
    const text = '{"rules":[{"id":"a","eventType":"anomaly","severity":"low","threshold":2,"windowSecs":30,"cooldownSecs":0,"enabled":false,"notifyUI":false,"notifyLog":true}]}';
    expect(JSON.parse(settingFromDrafts(draftsFromSetting(text)))).toEqual(JSON.parse(text));
    expect(draftsFromSetting('not json')).toEqual([]);
    const g = groupRuleErrors([
      { path: 'rules[0].severity', message: 'bad' },
      { path: 'rules[0].severity', message: 'worse' },
      { path: 'rules[2]', message: 'must be an object' },
      { path: 'rules', message: 'at most 100 rules' },
      { path: 'rules[1].x', message: 'unknown field' },
    ]);
    expect(g.byRule.get(0)).toEqual({ severity: ['bad', 'worse'] });
    expect(g.byRule.get(2)).toEqual({ id: ['must be an object'] });
    expect(g.general.map((f) => f.path)).toEqual(['rules', 'rules[1].x']);
  });
});
