import { describe, expect, it } from 'vitest';
import i18n from '../i18n';
import { capabilityList, codeParts, settingHelp } from './values';

describe('daemon values in the user language', () => {
  it('translates known capabilities and keeps unknown ones', async () => {
    await i18n.changeLanguage('ja');
    expect(capabilityList(i18n.t, ['chat', 'chat_stream', 'teleport'])).toBe('チャット、ストリーミング、teleport');
  });

  it('translates the help of known settings, falls back to the daemon text, marks code', async () => {
    await i18n.changeLanguage('ja');
    expect(settingHelp(i18n.t, 'ui.theme', 'Colour theme of the app')).toBe('アプリの配色');
    expect(settingHelp(i18n.t, 'some.new_setting', 'Daemon help')).toBe('Daemon help');
    expect(codeParts('a `flm check` b')).toEqual([
      { code: false, text: 'a ' },
      { code: true, text: 'flm check' },
      { code: false, text: ' b' },
    ]);
  });
});
