// Notification channels and the delivery log (issue 18): `berth notify add|ls|rm|test|log`.
import type { Hono } from 'hono';
import { z } from 'zod';
import { channelName, createChannelBody, type ChannelInfo, type DeliveryAttempt } from '../../shared/notify.js';
import { ControlPlaneError } from '../errors.js';
import { channelInfo } from '../notify/store.js';
import type { ApiDeps } from './deps.js';
import { readJson, validParam } from './http.js';

const logLimit = z.coerce.number().int().min(1).max(1000);

export function registerNotifyRoutes(app: Hono, deps: ApiDeps): void {
  const notifier = () => {
    if (!deps.notify) throw new ControlPlaneError(503, 'notifications are not enabled on this control plane');
    return deps.notify;
  };

  app.post('/api/notify/channels', async (c) => {
    const body = await readJson(c, createChannelBody, { name: 'channel name', kind: 'channel kind', target: 'target', apps: 'app filter', events: 'event filter' });
    return c.json(notifier().addChannel(body), 201);
  });

  app.get('/api/notify/channels', (c) => {
    const body: ChannelInfo[] = notifier().store.channels().map(channelInfo);
    return c.json(body);
  });

  app.delete('/api/notify/channels/:name', (c) => {
    const name = validParam(channelName, c.req.param('name'), 'channel name');
    notifier().store.removeChannel(name);
    return c.json({ name, removed: true });
  });

  app.post('/api/notify/channels/:name/test', async (c) => {
    const name = validParam(channelName, c.req.param('name'), 'channel name');
    const body: DeliveryAttempt = await notifier().test(name);
    return c.json(body);
  });

  app.get('/api/notify/log', (c) => {
    const limit = validParam(logLimit, c.req.query('limit') ?? '50', 'limit');
    const channel = c.req.query('channel');
    const body: DeliveryAttempt[] = notifier().store.attempts(limit, channel === undefined ? undefined : validParam(channelName, channel, 'channel name'));
    return c.json(body);
  });
}
