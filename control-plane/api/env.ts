// An app's env vars. Values are secrets: listings mask them unless `?reveal=1`, logs only ever name
// keys. A change is pushed to the app's server as new desired state and takes effect on the next deploy.
import type { Hono } from 'hono';
import { z } from 'zod';
import { envPatchBody, envValue, MASKED_VALUE, type EnvChange, type EnvVar } from '../../shared/api.js';
import { appName, envKey } from '../../shared/validation.js';
import { BadRequestError } from '../errors.js';
import type { ApiDeps } from './deps.js';
import { readJson, validParam } from './http.js';

/** Keys are user input echoed in the error: shown quoted and cut short. */
const shown = (key: string) => JSON.stringify(key.length > 60 ? `${key.slice(0, 60)}…` : key);

/** Errors that name the offending key (zod alone would say "Invalid key in record"). */
function checkEnvPatch(body: Record<string, unknown>): void {
  const extra = Object.keys(body).find((k) => k !== 'set' && k !== 'unset');
  if (extra !== undefined) throw new BadRequestError(`unknown field ${shown(extra)}: expected "set" and/or "unset"`);
  if (body.set !== undefined) {
    if (typeof body.set !== 'object' || body.set === null || Array.isArray(body.set)) throw new BadRequestError('invalid env: "set" must be an object of KEY: VALUE');
    for (const [key, value] of Object.entries(body.set)) {
      const k = envKey.safeParse(key);
      if (!k.success) throw new BadRequestError(`invalid env key ${shown(key)}: ${k.error.issues[0]?.message ?? 'invalid'}`);
      if (typeof value !== 'string') throw new BadRequestError(`invalid value of ${key}: must be a string`);
      const v = envValue.safeParse(value);
      if (!v.success) throw new BadRequestError(`invalid value of ${key}: ${v.error.issues[0]?.message ?? 'invalid'}`);
    }
  }
  if (body.unset !== undefined) {
    if (!Array.isArray(body.unset)) throw new BadRequestError('invalid env keys to unset: "unset" must be an array of keys');
    for (const key of body.unset) {
      const k = envKey.safeParse(key);
      if (!k.success) throw new BadRequestError(`invalid env key ${typeof key === 'string' ? shown(key) : String(key).slice(0, 20)}: ${k.error.issues[0]?.message ?? 'invalid'}`);
    }
  }
}

const revealFlag = z.enum(['0', '1', 'true', 'false'], { message: 'reveal must be 1 or 0' }).transform((v) => v === '1' || v === 'true');

export function registerEnvRoutes(app: Hono, deps: ApiDeps): void {
  const { stores, hub } = deps;
  const log = deps.logger.child({ component: 'api' });
  const appParam = (v: string | undefined) => validParam(appName, v, 'app name');

  app.get('/api/apps/:name/env', (c) => {
    const name = stores.apps.require(appParam(c.req.param('name'))).name;
    const rawReveal = c.req.query('reveal');
    const reveal = rawReveal === undefined ? false : validParam(revealFlag, rawReveal, 'reveal');
    const body: EnvVar[] = reveal
      ? stores.env.list(name)
      : stores.env.keys(name).map((k) => ({ key: k.key, value: MASKED_VALUE, updatedAt: k.updatedAt }));
    if (reveal) log.info({ app: name, keys: body.length }, 'env values revealed');
    return c.json(body);
  });

  app.patch('/api/apps/:name/env', async (c) => {
    const name = appParam(c.req.param('name'));
    const req = await readJson(c, envPatchBody, { set: 'env', unset: 'env keys to unset' }, { precheck: checkEnvPatch });
    const { server, ...change } = stores.env.change(name, req.set ?? {}, req.unset ?? []);
    // Keys only: values never reach the log.
    log.info({ app: name, set: change.set, unset: change.unset }, 'env changed');
    if (change.set.length > 0 || change.unset.length > 0) hub.pushDesiredState(server);
    const body: EnvChange = change;
    return c.json(body);
  });
}
