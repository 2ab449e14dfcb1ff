/**
 * Push over HTTP: push rules (GET, PUT/DELETE custom rules, enabling and
 * disabling server-default rules, m.push_rules in /sync), pushers, the
 * notifications list, and unread/highlight counts in /sync that follow
 * mentions and read receipts.
 *
 *   RANVIER_TEST_DB=sqlite node --import tsx --test test/e2e/push.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, registerUser, type RegisteredUser, type TestServer } from './harness.js';
import { Api, caughtUp, enc } from './util.js';

const PASSWORD = 'push test password';
const PR = '/pushrules/global';

type SyncBody = any;

function assertError(r: { status: number; body: any }, status: number, errcode: string, what: string) {
  assert.equal(r.status, status, `${what}: status (${JSON.stringify(r.body)})`);
  assert.equal(r.body?.errcode, errcode, `${what}: errcode`);
}

/** Incremental sync from `since` until `done` returns a value for a response; returns it and the token after. */
async function syncUntil<T>(api: Api, since: string, done: (s: SyncBody) => T | undefined, timeoutMs = 5000): Promise<{ value: T; token: string; body: SyncBody }> {
  const deadline = Date.now() + timeoutMs;
  let token = since;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`sync condition not met within ${timeoutMs} ms`);
    const s = await api.sync({ since: token, timeout: 1000 });
    token = s.next_batch;
    const v = done(s);
    if (v !== undefined) return { value: v, token, body: s };
  }
}

const pushRulesIn = (s: SyncBody) => (s.account_data?.events ?? []).find((e: any) => e.type === 'm.push_rules')?.content;
const unreadIn = (s: SyncBody, roomId: string) => s.rooms?.join?.[roomId]?.unread_notifications;
const timelineIds = (s: SyncBody, roomId: string): string[] => (s.rooms?.join?.[roomId]?.timeline?.events ?? []).map((e: any) => e.event_id);

describe('push', { timeout: 90_000 }, () => {
  let server: TestServer;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let aliceApi: Api;
  let bobApi: Api;

  before(async () => {
    server = await startTestServer();
    alice = await registerUser(server.url, 'alice', PASSWORD);
    bob = await registerUser(server.url, 'bob', PASSWORD);
    aliceApi = new Api(server.url, alice.accessToken);
    bobApi = new Api(server.url, bob.accessToken);
  });

  after(async () => {
    await server?.close();
  });

  describe('push rules', () => {
    test('GET /pushrules/ returns the merged ruleset with default and enabled flags', async () => {
      const body = await aliceApi.ok('GET', '/pushrules/');
      assert.deepEqual(Object.keys(body), ['global']);
      const g = body.global;
      for (const kind of ['override', 'content', 'room', 'sender', 'underride']) assert.ok(Array.isArray(g[kind]), kind);
      assert.deepEqual(g.override[0], { rule_id: '.m.rule.master', default: true, enabled: false, actions: [], conditions: [] });
      const mention = g.override.find((r: any) => r.rule_id === '.m.rule.is_user_mention');
      assert.deepEqual(mention.conditions, [{ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: alice.userId }]);
      assert.deepEqual(g.underride.map((r: any) => r.rule_id),
        ['.m.rule.call', '.m.rule.encrypted_room_one_to_one', '.m.rule.room_one_to_one', '.m.rule.message', '.m.rule.encrypted']);
      for (const kind of Object.keys(g)) {
        for (const r of g[kind]) {
          assert.equal(typeof r.rule_id, 'string');
          assert.equal(typeof r.default, 'boolean');
          assert.equal(typeof r.enabled, 'boolean');
          assert.ok(Array.isArray(r.actions));
        }
      }
      assert.deepEqual(await aliceApi.ok('GET', `${PR}/`), g);
      assert.deepEqual(await aliceApi.ok('GET', `${PR}/underride`), g.underride);
      assert.deepEqual(await aliceApi.ok('GET', `${PR}/override/.m.rule.master`), g.override[0]);
    });

    test('the first /sync carries m.push_rules, and so does GET account_data; clients cannot PUT it', async () => {
      const s = await aliceApi.sync({ timeout: 0 });
      const rules = pushRulesIn(s);
      assert.ok(rules, 'm.push_rules in account_data');
      assert.deepEqual(rules, await aliceApi.ok('GET', '/pushrules/'));
      assert.deepEqual(await aliceApi.ok('GET', `/user/${enc(alice.userId)}/account_data/m.push_rules`), rules);
      const put = await aliceApi.put(`/user/${enc(alice.userId)}/account_data/m.push_rules`, { global: {} });
      assert.equal(put.status, 405);
    });

    test('PUT, reorder and DELETE custom rules', async () => {
      const since = await caughtUp(aliceApi);
      await aliceApi.ok('PUT', `${PR}/content/SSByZWFsbHkgbGlrZSBjYWtl`, { pattern: 'cake', actions: ['notify', { set_tweak: 'sound', value: 'cakealarm.wav' }] });
      assert.deepEqual(await aliceApi.ok('GET', `${PR}/content/SSByZWFsbHkgbGlrZSBjYWtl`), {
        rule_id: 'SSByZWFsbHkgbGlrZSBjYWtl', default: false, enabled: true, pattern: 'cake',
        actions: ['notify', { set_tweak: 'sound', value: 'cakealarm.wav' }],
      });
      await aliceApi.ok('PUT', `${PR}/content/U3BvbmdlIGNha2UgaXMgYmVzdA?before=SSByZWFsbHkgbGlrZSBjYWtl`, { pattern: 'cake*lie', actions: ['notify'] });
      await aliceApi.ok('PUT', `${PR}/content/last?after=SSByZWFsbHkgbGlrZSBjYWtl`, { pattern: 'pie', actions: ['dont_notify'] });
      await aliceApi.ok('PUT', `${PR}/content/first`, { pattern: 'tart', actions: [] });
      let content = (await aliceApi.ok('GET', '/pushrules/')).global.content;
      assert.deepEqual(content.map((r: any) => r.rule_id), ['first', 'U3BvbmdlIGNha2UgaXMgYmVzdA', 'SSByZWFsbHkgbGlrZSBjYWtl', 'last']);
      assert.deepEqual(content[3].actions, [], 'dont_notify is stripped');

      // Updating in place keeps the position and the enabled state.
      await aliceApi.ok('PUT', `${PR}/content/SSByZWFsbHkgbGlrZSBjYWtl/enabled`, { enabled: false });
      await aliceApi.ok('PUT', `${PR}/content/SSByZWFsbHkgbGlrZSBjYWtl`, { pattern: 'cakes', actions: [] });
      content = (await aliceApi.ok('GET', '/pushrules/')).global.content;
      assert.equal(content[2].rule_id, 'SSByZWFsbHkgbGlrZSBjYWtl');
      assert.equal(content[2].pattern, 'cakes');
      assert.equal(content[2].enabled, false);

      // Override rules from the spec example rank after the master rule, before the other defaults.
      await aliceApi.ok('PUT', `${PR}/override/U2VlIHlvdSBpbiBUaGUgRHVrZQ`, {
        conditions: [{ kind: 'event_match', key: 'content.body', pattern: 'beer' }, { kind: 'room_member_count', is: '<=10' }],
        actions: ['notify', { set_tweak: 'sound', value: 'beeroclock.wav' }],
      });
      const override = (await aliceApi.ok('GET', '/pushrules/')).global.override;
      assert.deepEqual(override.slice(0, 3).map((r: any) => r.rule_id), ['.m.rule.master', 'U2VlIHlvdSBpbiBUaGUgRHVrZQ', '.m.rule.suppress_notices']);
      await aliceApi.ok('PUT', `${PR}/room/${enc('!dj234r78wl45Gh4D:matrix.org')}`, { actions: [] });
      await aliceApi.ok('PUT', `${PR}/sender/${enc('@spambot:matrix.org')}`, { actions: [] });
      assert.deepEqual(await aliceApi.ok('GET', `${PR}/sender/${enc('@spambot:matrix.org')}`),
        { rule_id: '@spambot:matrix.org', default: false, enabled: true, actions: [] });

      // /sync sends the new ruleset.
      const { value } = await syncUntil(aliceApi, since, (s) => {
        const r = pushRulesIn(s);
        return r?.global?.sender?.length ? r : undefined;
      });
      assert.deepEqual(value, await aliceApi.ok('GET', '/pushrules/'));

      await aliceApi.ok('DELETE', `${PR}/content/first`);
      assertError(await aliceApi.get(`${PR}/content/first`), 404, 'M_NOT_FOUND', 'deleted rule');
      assertError(await aliceApi.call('DELETE', `${PR}/content/first`), 404, 'M_NOT_FOUND', 'delete twice');
      assert.deepEqual((await aliceApi.ok('GET', `${PR}/content`)).map((r: any) => r.rule_id),
        ['U3BvbmdlIGNha2UgaXMgYmVzdA', 'SSByZWFsbHkgbGlrZSBjYWtl', 'last']);
    });

    test('bad PUTs are refused', async () => {
      assertError(await aliceApi.put(`${PR}/content/x?before=nope`, { pattern: 'x', actions: [] }), 400, 'M_UNKNOWN', 'unknown before');
      assertError(await aliceApi.put(`${PR}/underride/x?after=.m.rule.message`, { actions: [] }), 400, 'M_UNKNOWN', 'relative to a default rule');
      assertError(await aliceApi.put(`${PR}/underride/.m.rule.message`, { actions: [] }), 400, 'M_INVALID_PARAM', 'redefining a default rule');
      assertError(await aliceApi.put(`${PR}/override/.mine`, { actions: [] }), 400, 'M_INVALID_PARAM', 'dotted id');
      assertError(await aliceApi.put(`${PR}/override/a%5Cb`, { actions: [] }), 400, 'M_INVALID_PARAM', 'backslash');
      assertError(await aliceApi.put(`${PR}/override/x`, {}), 400, 'M_MISSING_PARAM', 'no actions');
      assertError(await aliceApi.put(`${PR}/override/x`, { actions: ['explode'] }), 400, 'M_BAD_JSON', 'unknown action');
      assertError(await aliceApi.put(`${PR}/override/x`, { actions: [], conditions: [{ key: 'type' }] }), 400, 'M_BAD_JSON', 'condition without kind');
      assertError(await aliceApi.put(`${PR}/content/x`, { actions: [] }), 400, 'M_MISSING_PARAM', 'content rule without pattern');
      assertError(await aliceApi.put(`${PR}/nonsense/x`, { actions: [] }), 400, 'M_INVALID_PARAM', 'unknown kind');
      assertError(await aliceApi.put('/pushrules/device/override/x', { actions: [] }), 400, 'M_INVALID_PARAM', 'unknown scope');
      assertError(await aliceApi.get(`${PR}/override/nope`), 404, 'M_NOT_FOUND', 'unknown rule');
      assertError(await aliceApi.get(`${PR}/override/.m.rule.master/colour`), 400, 'M_INVALID_PARAM', 'unknown attribute');
      assertError(await aliceApi.put(`${PR}/override/.m.rule.master/enabled`, { enabled: 'yes' }), 400, 'M_BAD_JSON', 'enabled not a boolean');
      assertError(await aliceApi.put(`${PR}/override/.m.rule.master/enabled`, {}), 400, 'M_MISSING_PARAM', 'enabled missing');
      assertError(await aliceApi.put(`${PR}/override/nope/enabled`, { enabled: true }), 404, 'M_NOT_FOUND', 'enable unknown rule');
      assertError(await aliceApi.put(`${PR}/override/nope/actions`, { actions: [] }), 404, 'M_NOT_FOUND', 'actions of unknown rule');
      assertError(await aliceApi.call('DELETE', `${PR}/underride/.m.rule.message`), 400, 'M_INVALID_PARAM', 'delete default');
      assertError(await aliceApi.call('DELETE', `${PR}/underride/.m.rule.nope`), 404, 'M_NOT_FOUND', 'delete unknown default');
      const anon = await new Api(server.url).get('/pushrules/');
      assertError(anon, 401, 'M_MISSING_TOKEN', 'no token');
    });

    test('enable, disable and re-action a server-default rule', async () => {
      const since = await caughtUp(aliceApi);
      await aliceApi.ok('PUT', `${PR}/override/.m.rule.master/enabled`, { enabled: true });
      assert.deepEqual(await aliceApi.ok('GET', `${PR}/override/.m.rule.master/enabled`), { enabled: true });
      const { token } = await syncUntil(aliceApi, since, (s) => (pushRulesIn(s)?.global.override[0].enabled === true ? true : undefined));
      await aliceApi.ok('PUT', `${PR}/override/.m.rule.master/enabled`, { enabled: false });
      assert.equal((await aliceApi.ok('GET', `${PR}/override/.m.rule.master`)).enabled, false);
      await syncUntil(aliceApi, token, (s) => (pushRulesIn(s)?.global.override[0].enabled === false ? true : undefined));

      await aliceApi.ok('PUT', `${PR}/underride/.m.rule.message/actions`, { actions: ['notify', { set_tweak: 'sound', value: 'ping' }, 'coalesce'] });
      assert.deepEqual(await aliceApi.ok('GET', `${PR}/underride/.m.rule.message/actions`), { actions: ['notify', { set_tweak: 'sound', value: 'ping' }] });
      const rule = await aliceApi.ok('GET', `${PR}/underride/.m.rule.message`);
      assert.equal(rule.default, true);
      assert.deepEqual(rule.conditions, [{ kind: 'event_match', key: 'type', pattern: 'm.room.message' }], 'the definition is unchanged');
      await aliceApi.ok('PUT', `${PR}/underride/.m.rule.message/actions`, { actions: ['notify'] });
    });
  });

  describe('pushers', () => {
    const pusher = (over: Record<string, unknown> = {}) => ({
      kind: 'http', app_id: 'com.example.app.ios', pushkey: 'key-1', app_display_name: 'Mat Rix',
      device_display_name: 'iPhone 9', lang: 'en', profile_tag: 'xxyyzz',
      data: { url: 'https://push-gateway.example/_matrix/push/v1/notify', format: 'event_id_only', custom: 1 }, ...over,
    });

    test('set, list, update and delete', async () => {
      assert.deepEqual(await aliceApi.ok('GET', '/pushers'), { pushers: [] });
      await aliceApi.ok('POST', '/pushers/set', pusher());
      const { profile_tag: _p, ...rest } = pusher();
      assert.deepEqual(await aliceApi.ok('GET', '/pushers'), { pushers: [{ ...rest, profile_tag: 'xxyyzz' }] });
      await aliceApi.ok('POST', '/pushers/set', pusher({ lang: 'fr' }));
      const list = (await aliceApi.ok('GET', '/pushers')).pushers;
      assert.equal(list.length, 1);
      assert.equal(list[0].lang, 'fr');
      await aliceApi.ok('POST', '/pushers/set', pusher({ pushkey: 'key-2' }));
      assert.equal((await aliceApi.ok('GET', '/pushers')).pushers.length, 2);
      await aliceApi.ok('POST', '/pushers/set', { kind: null, app_id: 'com.example.app.ios', pushkey: 'key-2' });
      assert.deepEqual((await aliceApi.ok('GET', '/pushers')).pushers.map((p: any) => p.pushkey), ['key-1']);
    });

    test('append: false takes the pushkey from other users, append: true shares it', async () => {
      await aliceApi.ok('POST', '/pushers/set', pusher({ pushkey: 'shared' }));
      await bobApi.ok('POST', '/pushers/set', pusher({ pushkey: 'shared', append: true }));
      assert.ok((await aliceApi.ok('GET', '/pushers')).pushers.some((p: any) => p.pushkey === 'shared'));
      await bobApi.ok('POST', '/pushers/set', pusher({ pushkey: 'shared' }));
      assert.ok(!(await aliceApi.ok('GET', '/pushers')).pushers.some((p: any) => p.pushkey === 'shared'));
      assert.ok((await bobApi.ok('GET', '/pushers')).pushers.some((p: any) => p.pushkey === 'shared'));
      await bobApi.ok('POST', '/pushers/set', { kind: null, app_id: 'com.example.app.ios', pushkey: 'shared' });
    });

    test('validation errors', async () => {
      assertError(await aliceApi.post('/pushers/set', { app_id: 'a', pushkey: 'k' }), 400, 'M_MISSING_PARAM', 'no kind');
      assertError(await aliceApi.post('/pushers/set', { kind: 'http', app_id: 'a', pushkey: 'k' }), 400, 'M_MISSING_PARAM', 'no data etc.');
      assertError(await aliceApi.post('/pushers/set', pusher({ app_id: 'a'.repeat(65) })), 400, 'M_INVALID_PARAM', 'long app_id');
      assertError(await aliceApi.post('/pushers/set', pusher({ pushkey: 'k'.repeat(513) })), 400, 'M_INVALID_PARAM', 'long pushkey');
      assertError(await aliceApi.post('/pushers/set', pusher({ data: { url: 'https://gw.example/notify' } })), 400, 'M_INVALID_PARAM', 'bad url path');
      assertError(await aliceApi.post('/pushers/set', pusher({ kind: 7 })), 400, 'M_BAD_JSON', 'kind type');
    });

    test('logging out a device removes its pushers', async () => {
      const login = await aliceApi.ok('POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'alice' }, password: PASSWORD });
      const phone = new Api(server.url, login.access_token);
      await phone.ok('POST', '/pushers/set', pusher({ pushkey: 'phone' }));
      assert.ok((await aliceApi.ok('GET', '/pushers')).pushers.some((p: any) => p.pushkey === 'phone'));
      await phone.ok('POST', '/logout', {});
      assert.ok(!(await aliceApi.ok('GET', '/pushers')).pushers.some((p: any) => p.pushkey === 'phone'));
      assert.ok((await aliceApi.ok('GET', '/pushers')).pushers.some((p: any) => p.pushkey === 'key-1'), 'other devices keep theirs');
    });
  });

  describe('notification counts', () => {
    let roomId: string;

    before(async () => {
      roomId = await aliceApi.createRoom({ preset: 'private_chat', name: 'Push room' });
      await aliceApi.invite(roomId, bob.userId);
      await bobApi.join(roomId);
    });

    test('a message and a mention raise the counts in the same /sync as the event; a read receipt resets them', async () => {
      let since = await caughtUp(bobApi);
      const plain = await aliceApi.send(roomId, 'hello bob');
      let r = await syncUntil(bobApi, since, (s) => (timelineIds(s, roomId).includes(plain) ? unreadIn(s, roomId) : undefined));
      assert.deepEqual(r.value, { notification_count: 1, highlight_count: 0 });
      since = r.token;

      const mention = await aliceApi.send(roomId, { msgtype: 'm.text', body: 'bob: look', 'm.mentions': { user_ids: [bob.userId] } });
      r = await syncUntil(bobApi, since, (s) => (timelineIds(s, roomId).includes(mention) ? unreadIn(s, roomId) : undefined));
      assert.deepEqual(r.value, { notification_count: 2, highlight_count: 1 });
      since = r.token;

      // The sender's own counts do not move.
      const aliceInitial = await aliceApi.sync({ timeout: 0 });
      assert.deepEqual(unreadIn(aliceInitial, roomId), { notification_count: 0, highlight_count: 0 });

      // GET /notifications lists both, newest first, then the invite (.m.rule.invite_for_me); only=highlight just the mention.
      const n = await bobApi.ok('GET', '/notifications');
      assert.deepEqual(n.notifications.slice(0, 2).map((x: any) => x.event.event_id), [mention, plain]);
      assert.equal(n.notifications.length, 3);
      assert.equal(n.notifications[2].event.type, 'm.room.member');
      assert.equal(n.notifications[2].event.state_key, bob.userId);
      assert.equal(n.notifications[2].event.content.membership, 'invite');
      assert.equal(n.notifications[0].room_id, roomId);
      assert.equal(n.notifications[0].read, false);
      assert.equal(typeof n.notifications[0].ts, 'number');
      assert.ok(n.notifications[0].actions.some((a: any) => a.set_tweak === 'highlight'));
      const h = await bobApi.ok('GET', '/notifications?only=highlight');
      assert.deepEqual(h.notifications.map((x: any) => x.event.event_id), [mention]);
      const page1 = await bobApi.ok('GET', '/notifications?limit=1');
      assert.equal(page1.notifications.length, 1);
      assert.equal(typeof page1.next_token, 'string');
      const page2 = await bobApi.ok('GET', `/notifications?limit=1&from=${page1.next_token}`);
      assert.deepEqual(page2.notifications.map((x: any) => x.event.event_id), [plain]);

      await bobApi.ok('POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(mention)}`, {});
      r = await syncUntil(bobApi, since, (s) => {
        const u = unreadIn(s, roomId);
        return u && u.notification_count === 0 ? u : undefined;
      });
      assert.deepEqual(r.value, { notification_count: 0, highlight_count: 0 });
      since = r.token;
      assert.ok((await bobApi.ok('GET', '/notifications')).notifications.every((x: any) => x.read === true));

      // A private receipt clears as well.
      const again = await aliceApi.send(roomId, { msgtype: 'm.text', body: 'again', 'm.mentions': { user_ids: [bob.userId] } });
      r = await syncUntil(bobApi, since, (s) => (timelineIds(s, roomId).includes(again) ? unreadIn(s, roomId) : undefined));
      assert.deepEqual(r.value, { notification_count: 1, highlight_count: 1 });
      await bobApi.ok('POST', `/rooms/${enc(roomId)}/receipt/m.read.private/${enc(again)}`, {});
      r = await syncUntil(bobApi, r.token, (s) => (unreadIn(s, roomId)?.notification_count === 0 ? unreadIn(s, roomId) : undefined));
      assert.deepEqual(r.value, { notification_count: 0, highlight_count: 0 });
    });

    test("the user's own messages neither count nor clear (only receipts do)", async () => {
      const one = await aliceApi.send(roomId, 'one');
      const initial = await bobApi.sync({ timeout: 0 });
      assert.ok(timelineIds(initial, roomId).includes(one));
      assert.equal(unreadIn(initial, roomId).notification_count, 1);
      const reply = await bobApi.send(roomId, 'reply');
      assert.deepEqual(unreadIn(await bobApi.sync({ timeout: 0 }), roomId), { notification_count: 1, highlight_count: 0 });
      await bobApi.ok('POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(reply)}`, {});
      assert.deepEqual(unreadIn(await bobApi.sync({ timeout: 0 }), roomId), { notification_count: 0, highlight_count: 0 });
    });

    test('notices, the master rule and redactions do not count', async () => {
      const since = await caughtUp(bobApi);
      await aliceApi.send(roomId, { msgtype: 'm.notice', body: 'bot says hi' });
      await bobApi.ok('PUT', `${PR}/override/.m.rule.master/enabled`, { enabled: true });
      await aliceApi.send(roomId, { msgtype: 'm.text', body: 'muted', 'm.mentions': { user_ids: [bob.userId] } });
      await bobApi.ok('PUT', `${PR}/override/.m.rule.master/enabled`, { enabled: false });
      const counted = await aliceApi.send(roomId, 'counted');
      const r = await syncUntil(bobApi, since, (s) => (timelineIds(s, roomId).includes(counted) ? unreadIn(s, roomId) : undefined));
      assert.deepEqual(r.value, { notification_count: 1, highlight_count: 0 });

      await aliceApi.ok('PUT', `/rooms/${enc(roomId)}/redact/${enc(counted)}/redact-1`, {});
      const initial = await bobApi.sync({ timeout: 0 });
      assert.deepEqual(unreadIn(initial, roomId), { notification_count: 0, highlight_count: 0 });
    });

    test('a sender rule silences one user, but override rules (mentions) still win', async () => {
      const latest = await bobApi.send(roomId, 'catching up');
      await bobApi.ok('POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(latest)}`, {});
      await bobApi.ok('PUT', `${PR}/sender/${enc(alice.userId)}`, { actions: [] });
      await aliceApi.send(roomId, 'shh');
      let initial = await bobApi.sync({ timeout: 0 });
      assert.deepEqual(unreadIn(initial, roomId), { notification_count: 0, highlight_count: 0 });
      await aliceApi.send(roomId, { msgtype: 'm.text', body: 'but this', 'm.mentions': { user_ids: [bob.userId] } });
      initial = await bobApi.sync({ timeout: 0 });
      assert.deepEqual(unreadIn(initial, roomId), { notification_count: 1, highlight_count: 1 });
      await bobApi.ok('DELETE', `${PR}/sender/${enc(alice.userId)}`);
    });
  });
});
