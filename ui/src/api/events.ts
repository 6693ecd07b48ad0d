// One EventSource on /api/v1/events for the whole app; views subscribe to the kinds that
// affect them and refetch. EventSource reconnects by itself after a daemon hiccup.
import type { EventKind } from './types';

type Listener = (data: unknown) => void;
/** Every kind the daemon sends (`alert`: a rule of the Alert Settings fired). */
export type StreamKind = EventKind;

const listeners = new Map<StreamKind, Set<Listener>>();
let source: EventSource | null = null;
// A record, not a list, so that tsc fails when the daemon gains a kind the app does not listen to.
const KIND_SET: Record<EventKind, true> = { engine: true, proxy: true, ban: true, unblock: true, keys: true, policy: true, config: true, alert: true };
const KINDS = Object.keys(KIND_SET) as EventKind[];

function ensureSource(): void {
  if (source !== null || typeof EventSource === 'undefined') return;
  source = new EventSource('/api/v1/events');
  for (const kind of KINDS) {
    source.addEventListener(kind, (ev: MessageEvent<string>) => {
      let data: unknown = null;
      try {
        data = JSON.parse(ev.data);
      } catch {
        data = null;
      }
      listeners.get(kind)?.forEach((l) => l(data));
    });
  }
}

export function subscribe(kinds: readonly StreamKind[], l: Listener): () => void {
  ensureSource();
  for (const k of kinds) {
    let set = listeners.get(k);
    if (!set) {
      set = new Set();
      listeners.set(k, set);
    }
    set.add(l);
  }
  return () => {
    for (const k of kinds) listeners.get(k)?.delete(l);
  };
}
