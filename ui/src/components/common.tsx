import { useEffect, useId, useRef, useState, type ReactNode } from 'react';
import { useTranslation } from 'react-i18next';
import type { ApiError } from '../api/client';
import { errorCodeKey } from '../api/errors';

/** An error with its translated meaning, one concrete next step, and the request id. */
export function ErrorBox({ error, onRetry }: { error: ApiError; onRetry?: () => void }) {
  const { t } = useTranslation();
  const key = errorCodeKey(error.code);
  return (
    <div className="alert alert-error" role="alert">
      <p className="alert-title">{t(`errors.${key}.message`)}</p>
      <p>{t(`errors.${key}.fix`)}</p>
      <p className="muted small">
        {t('errors.details')}: <code>{error.code}</code> — {error.message}
      </p>
      <p className="muted small">
        {t('errors.requestId')}: <code data-testid="request-id">{error.requestId ?? '—'}</code>
      </p>
      {onRetry && (
        <button type="button" className="btn btn-secondary" onClick={onRetry}>
          {t('errors.retry')}
        </button>
      )}
    </div>
  );
}

export function Loading() {
  const { t } = useTranslation();
  return (
    <p className="loading" role="status">
      <span className="spinner" aria-hidden="true" /> {t('common.loading')}
    </p>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

export function CopyButton({ text, label }: { text: string; label: string }) {
  const { t } = useTranslation();
  const [done, setDone] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setDone(true);
      setTimeout(() => setDone(false), 2000);
    } catch {
      setDone(false);
    }
  };
  return (
    <button type="button" className="btn btn-secondary btn-small" onClick={() => void copy()} aria-label={`${t('common.copy')}: ${label}`}>
      {done ? t('common.copied') : t('common.copy')}
    </button>
  );
}

/** A modal dialog: focus moves in, Escape closes, focus returns to the opener. */
export function Modal({ title, onClose, children, footer }: { title: string; onClose: () => void; children: ReactNode; footer: ReactNode }) {
  const titleId = useId();
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const opener = document.activeElement as HTMLElement | null;
    const el = ref.current;
    const first = el?.querySelector<HTMLElement>('input, textarea, select, button');
    (first ?? el)?.focus();
    return () => opener?.focus();
  }, []);
  const onKey = (e: React.KeyboardEvent) => {
    if (e.key === 'Escape') {
      e.stopPropagation();
      onClose();
      return;
    }
    if (e.key !== 'Tab' || !ref.current) return;
    const items = Array.from(ref.current.querySelectorAll<HTMLElement>('input, textarea, select, button, a[href]')).filter((x) => !x.hasAttribute('disabled'));
    if (items.length === 0) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (e.shiftKey && document.activeElement === first) {
      e.preventDefault();
      last?.focus();
    } else if (!e.shiftKey && document.activeElement === last) {
      e.preventDefault();
      first?.focus();
    }
  };
  return (
    <div className="modal-backdrop">
      {/* eslint-disable-next-line jsx-a11y/no-noninteractive-element-interactions -- the dialog owns Escape and the Tab focus trap (WAI-ARIA dialog pattern) */}
      <div className="modal" role="dialog" aria-modal="true" aria-labelledby={titleId} ref={ref} tabIndex={-1} onKeyDown={onKey}>
        <h2 id={titleId}>{title}</h2>
        <div className="modal-body">{children}</div>
        <div className="modal-footer">{footer}</div>
      </div>
    </div>
  );
}

export function ConfirmDialog(props: {
  title: string;
  message: ReactNode;
  confirmLabel: string;
  busy?: boolean;
  danger?: boolean;
  error?: ApiError | null;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  const { t } = useTranslation();
  return (
    <Modal
      title={props.title}
      onClose={props.onCancel}
      footer={
        <>
          <button type="button" className="btn btn-secondary" onClick={props.onCancel}>
            {t('common.cancel')}
          </button>
          <button type="button" className={props.danger ? 'btn btn-danger' : 'btn btn-primary'} onClick={props.onConfirm} disabled={props.busy}>
            {props.busy ? t('common.working') : props.confirmLabel}
          </button>
        </>
      }
    >
      <div>{props.message}</div>
      {props.error && <ErrorBox error={props.error} />}
    </Modal>
  );
}

/** The plaintext of a new key, shown exactly once; closing drops it from memory. */
export function SecretDialog({ title, secret, label, onClose }: { title: string; secret: string; label: string; onClose: () => void }) {
  const { t } = useTranslation();
  const id = useId();
  return (
    <Modal
      title={title}
      onClose={onClose}
      footer={
        <button type="button" className="btn btn-primary" onClick={onClose}>
          {t('keys.secretDone')}
        </button>
      }
    >
      <p className="alert alert-warning">{t('keys.secretOnce')}</p>
      <label htmlFor={id}>{t('keys.secretLabel', { label })}</label>
      <div className="row">
        <input id={id} className="input mono grow" readOnly value={secret} data-testid="key-secret" />
        <CopyButton text={secret} label={t('keys.secretLabel', { label })} />
      </div>
    </Modal>
  );
}

export function StatusBadge({ status }: { status: string }) {
  const { t } = useTranslation();
  const known = ['healthy', 'degraded', 'down', 'installed_only', 'running', 'stopped', 'temporary', 'permanent', 'counting'];
  const k = known.includes(status) ? status : 'unknown';
  return <span className={`badge badge-${k}`}>{t(`status.${k}`)}</span>;
}

/**
 * `components` for `<Trans>`: `<data>…</data>` in a translated sentence marks a value
 * (a rule id, an address) that is data, not text to translate.
 */
export const DATA = { data: <span translate="no" /> };
