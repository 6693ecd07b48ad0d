import { describe, expect, it } from 'vitest';
import type { ProfileView, PromptView } from '../api/types';
import {
  charCount, EMPTY_PROFILE, exampleRequest, filterProfiles, firstLine, paramsSummary, parseParams, profileForm,
  profileProblems, profileRequest, promptProblems, promptRequest, sortPrompts,
} from './profiles';

const profile = (label: string, target: string, parameters: Record<string, unknown> = {}): ProfileView => ({
  id: `mp_${label}`, label, model_id: `profile/${label}`, target, engine_id: target.startsWith('flm://') ? target.split('/')[2]! : '',
  model: target.split('/').pop()!, parameters, updated_at: '2026-12-06T00:00:00.000Z',
});

const prompt = (scope: PromptView['scope'], target: string | null): PromptView => ({
  api_id: scope === 'default' ? 'default' : `${scope}:${target}`, scope, target, key_label: null, text: 'x', chars: 1,
  updated_at: '2026-12-06T00:00:00.000Z',
});

describe('model profile form', () => {
  it('parses parameters: an object, empty text, or the problem', () => {
    expect(parseParams('{"temperature":0.2}')).toEqual({ ok: true, value: { temperature: 0.2 } });
    expect(parseParams('  ')).toEqual({ ok: true, value: {} });
    expect(parseParams('{oops')).toEqual({ ok: false, problem: 'paramsJson' });
    expect(parseParams('[1]')).toEqual({ ok: false, problem: 'paramsObject' });
    expect(parseParams('null')).toEqual({ ok: false, problem: 'paramsObject' });
  });

  it('names every problem by field', () => {
    expect(profileProblems({ ...EMPTY_PROFILE, label: '', model: '' })).toEqual({ label: 'labelRequired', model: 'modelRequired' });
    expect(profileProblems({ ...EMPTY_PROFILE, label: 'a/b', model: 'm', params: '[' })).toEqual({ label: 'labelInvalid', parameters: 'paramsJson' });
    expect(profileProblems({ ...EMPTY_PROFILE, label: 'fast-1', model: 'tiny' })).toEqual({});
    expect(profileProblems({ ...EMPTY_PROFILE, label: 'x'.repeat(65), model: 'm' }).label).toBe('labelInvalid');
  });

  it('builds the request and edits an existing profile', () => {
    const p = profile('fast', 'flm://llama/tiny', { temperature: 0.2 });
    const f = profileForm(p);
    expect(f).toMatchObject({ id: 'mp_fast', label: 'fast', model: 'flm://llama/tiny' });
    expect(profileRequest({ ...f, engine: ' ' })).toEqual({ id: 'mp_fast', engine_id: null, model: 'flm://llama/tiny', label: 'fast', parameters: { temperature: 0.2 } });
  });

  it('filters, summarises and shows an example', () => {
    const list = [profile('fast', 'flm://llama/tiny'), profile('slow', 'qwen')];
    expect(filterProfiles(list, 'LLAMA').map((p) => p.label)).toEqual(['fast']);
    expect(filterProfiles(list, '').length).toBe(2);
    expect(paramsSummary({ temperature: 0.2, stop: ['END'] })).toBe('temperature=0.2, stop=["END"]');
    expect(paramsSummary({})).toBe('—');
    expect(JSON.parse(exampleRequest(' fast ')).model).toBe('profile/fast');
  });
});

describe('prompt template form', () => {
  it('names every problem by field, counting characters like the daemon', () => {
    expect(promptProblems({ scope: 'model', target: ' ', text: '' }, 10)).toEqual({ target: 'targetRequired', text: 'textRequired' });
    expect(promptProblems({ scope: 'default', target: '', text: 'x'.repeat(11) }, 10)).toEqual({ text: 'textTooLong' });
    expect(promptProblems({ scope: 'default', target: '', text: '😀'.repeat(10) }, 10)).toEqual({});
    expect(charCount('😀a')).toBe(2);
  });

  it('builds the request: no target for the default', () => {
    expect(promptRequest({ scope: 'default', target: 'ignored', text: 'T' })).toEqual({ scope: 'default', target: null, text: 'T' });
    expect(promptRequest({ scope: 'key', target: ' key_1 ', text: 'T' })).toEqual({ scope: 'key', target: 'key_1', text: 'T' });
  });

  it('cuts the first line and sorts default, models, keys', () => {
    expect(firstLine('one\ntwo')).toBe('one…');
    expect(firstLine('abcdef', 3)).toBe('abc…');
    expect(firstLine('short')).toBe('short');
    const sorted = sortPrompts([prompt('key', 'key_a'), prompt('model', 'b'), prompt('default', null), prompt('model', 'a')]);
    expect(sorted.map((p) => p.api_id)).toEqual(['default', 'model:a', 'model:b', 'key:key_a']);
  });
});
