import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError } from './client';
import { subscribe } from './events';
import type { EventKind } from './types';

export interface Resource<T> {
  data: T | null;
  error: ApiError | null;
  loading: boolean;
  reload: () => void;
}

function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  return new ApiError(0, 'network_error', e instanceof Error ? e.message : String(e), null);
}

/**
 * Loads `load()` now, again whenever `deps` change, and again on each of the daemon's
 * `events` (live refresh). The last good data stays visible while a refetch runs.
 */
export function useResource<T>(load: () => Promise<T>, deps: readonly unknown[], events: readonly EventKind[] = []): Resource<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [tick, setTick] = useState(0);
  // Loading = the newest request (its key) has not settled yet; no setState inside the effect body.
  const key = JSON.stringify([tick, ...deps]);
  const [settledKey, setSettledKey] = useState<string | null>(null);
  const loadRef = useRef(load);
  useEffect(() => {
    loadRef.current = load;
  });

  const reload = useCallback(() => setTick((n) => n + 1), []);

  useEffect(() => {
    let live = true;
    loadRef.current().then(
      (d) => {
        if (!live) return;
        setData(d);
        setError(null);
        setSettledKey(key);
      },
      (e: unknown) => {
        if (!live) return;
        setError(toApiError(e));
        setSettledKey(key);
      },
    );
    return () => {
      live = false;
    };
  }, [key]);
  const loading = settledKey !== key;

  const eventKey = events.join(',');
  useEffect(() => {
    if (!eventKey) return;
    return subscribe(eventKey.split(',') as EventKind[], reload);
  }, [eventKey, reload]);

  return { data, error, loading, reload };
}

export interface Action {
  busy: boolean;
  error: ApiError | null;
  run: <R>(fn: () => Promise<R>) => Promise<R | undefined>;
  clear: () => void;
}

/** Runs one user action at a time, keeping its error for display. */
export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const run = useCallback(async <R,>(fn: () => Promise<R>): Promise<R | undefined> => {
    setBusy(true);
    setError(null);
    try {
      return await fn();
    } catch (e) {
      setError(toApiError(e));
      return undefined;
    } finally {
      setBusy(false);
    }
  }, []);
  const clear = useCallback(() => setError(null), []);
  return { busy, error, run, clear };
}
