import { useEffect, useRef, useState } from 'react';
import { Trans, useTranslation } from 'react-i18next';
import { Link } from 'react-router-dom';
import { eventTypeKey, isAlertEvent, severityKey, toastSticky, TOAST_MS, type AlertEvent } from '../api/alerts';
import { subscribe } from '../api/events';
import { DATA } from './common';

interface Toast {
  id: number;
  alert: AlertEvent;
}

/** At most this many notices at once: a burst of different rules must not cover the screen. */
const MAX_TOASTS = 4;

/** Notices for the daemon's `alert` events, on every screen. Critical ones stay until
 * dismissed (role=alert); the others leave after TOAST_MS (role=status). */
export function AlertToasts() {
  const { t } = useTranslation();
  const [toasts, setToasts] = useState<Toast[]>([]);
  const seq = useRef(0);
  const timers = useRef(new Map<number, ReturnType<typeof setTimeout>>());

  useEffect(() => {
    const all = timers.current;
    const off = subscribe(['alert'], (data) => {
      if (!isAlertEvent(data)) return;
      const id = ++seq.current;
      setToasts((list) => [...list, { id, alert: data }].slice(-MAX_TOASTS));
      if (!toastSticky(data)) {
        all.set(
          id,
          setTimeout(() => {
            all.delete(id);
            setToasts((list) => list.filter((x) => x.id !== id));
          }, TOAST_MS),
        );
      }
    });
    return () => {
      off();
      all.forEach((h) => clearTimeout(h));
      all.clear();
    };
  }, []);

  const dismiss = (id: number) => {
    const h = timers.current.get(id);
    if (h) clearTimeout(h);
    timers.current.delete(id);
    setToasts((list) => list.filter((x) => x.id !== id));
  };

  if (toasts.length === 0) return null;
  return (
    <div className="toasts">
      {toasts.map(({ id, alert: a }) => {
        const sticky = toastSticky(a);
        return (
          <div key={id} className={sticky ? 'toast toast-critical' : 'toast'} role={sticky ? 'alert' : 'status'}>
            <p className="alert-title">
              {t('alertToasts.title', { type: t(eventTypeKey(a.event_type)), severity: t(severityKey(a.max_severity || a.severity)) })}
            </p>
            <p>
              {a.count > 1 || a.threshold > 1
                ? t('alertToasts.many', { count: a.count, secs: a.window_secs })
                : t('alertToasts.one')}
              {a.ip ? ` ${t('alertToasts.from', { ip: a.ip })}` : ''}
            </p>
            <p className="muted small">
              <Trans i18nKey="alertToasts.rule" values={{ id: a.rule_id }} components={DATA} />
            </p>
            <div className="row">
              <Link to="/security/events" onClick={() => dismiss(id)}>
                {t('alertToasts.view')}
              </Link>
              <button type="button" className="btn btn-secondary btn-small" onClick={() => dismiss(id)} aria-label={t('alertToasts.dismissLabel', { id: a.rule_id })}>
                {t('alertToasts.dismiss')}
              </button>
            </div>
          </div>
        );
      })}
    </div>
  );
}
