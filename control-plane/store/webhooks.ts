// Per-app webhook secrets (sealed at rest: the push secret is an HMAC key and `berth app show` prints
// both, so they cannot be stored as hashes) and the webhook deliveries already acted on, so a
// redelivered event never deploys twice.
import { createHash } from 'node:crypto';
import type { WebhookSecrets } from '../../shared/api.js';
import { newCliSafeSecret as newSecret } from '../tokens.js';
import type { SecretBox } from '../secret-box.js';
import { now, type Db } from './db.js';

/** How long a delivery id is remembered (hosts let users redeliver for a few days). */
export const DELIVERY_MEMORY_MS = 30 * 24 * 60 * 60 * 1000;

/**
 * Body hashes share the deliveries table (no migration): keyed `body-sha256:HEX`, the same key a
 * delivery without a host delivery id has always had.
 */
const PAYLOAD_PREFIX = 'body-sha256:';
/** The key a push body is remembered under: the SHA-256 of its exact bytes. */
export const payloadKey = (body: Buffer) => `${PAYLOAD_PREFIX}${createHash('sha256').update(body).digest('hex')}`;

const context = (app: string, which: keyof WebhookSecrets) => `webhook\0${app}\0${which}`;

interface SecretsRow {
  app: string;
  push_secret: Buffer;
  deploy_token: Buffer;
}

export interface DeliveryRow {
  app: string;
  delivery: string;
  host: string;
  deployment_id: string | null;
  received_at: string;
}

export class WebhookStore {
  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
  ) {}

  /** The app's secrets, created on first use (apps made before webhooks existed get theirs lazily). */
  secrets(app: string): WebhookSecrets {
    return this.db.transaction(() => {
      const row = this.db.prepare('SELECT * FROM app_webhooks WHERE app = ?').get(app) as SecretsRow | undefined;
      if (row) return { push: this.box.open(row.push_secret, context(app, 'push')), deploy: this.box.open(row.deploy_token, context(app, 'deploy')) };
      const fresh: WebhookSecrets = { push: newSecret(), deploy: newSecret() };
      this.db
        .prepare('INSERT INTO app_webhooks (app, push_secret, deploy_token, created_at) VALUES (?, ?, ?, ?)')
        .run(app, this.box.seal(fresh.push, context(app, 'push')), this.box.seal(fresh.deploy, context(app, 'deploy')), now());
      return fresh;
    })();
  }

  rotate(app: string, which: 'push' | 'deploy' | 'both'): WebhookSecrets {
    return this.db.transaction(() => {
      const current = this.secrets(app);
      const next: WebhookSecrets = {
        push: which === 'deploy' ? current.push : newSecret(),
        deploy: which === 'push' ? current.deploy : newSecret(),
      };
      this.db
        .prepare('UPDATE app_webhooks SET push_secret = ?, deploy_token = ?, rotated_at = ? WHERE app = ?')
        .run(this.box.seal(next.push, context(app, 'push')), this.box.seal(next.deploy, context(app, 'deploy')), now(), app);
      return next;
    })();
  }

  delivery(app: string, delivery: string): DeliveryRow | undefined {
    return this.db.prepare('SELECT * FROM webhook_deliveries WHERE app = ? AND delivery = ?').get(app, delivery) as DeliveryRow | undefined;
  }

  /** The deployment an identical push body (by its SHA-256) already created for the app, if any. */
  payload(app: string, body: Buffer): DeliveryRow | undefined {
    return this.delivery(app, payloadKey(body));
  }

  /**
   * Remember a delivery that was acted on, and the hash of its body (call inside the transaction that
   * creates its deployment). Delivery ids are forgotten after DELIVERY_MEMORY_MS; body hashes are kept
   * as long as the app exists, because a captured body stays replayable for ever.
   */
  remember(d: { app: string; delivery: string; host: string; deploymentId: string | null; body: Buffer }, at = new Date()): void {
    this.db
      .prepare(`DELETE FROM webhook_deliveries WHERE received_at < ? AND delivery NOT LIKE '${PAYLOAD_PREFIX}%'`)
      .run(new Date(at.getTime() - DELIVERY_MEMORY_MS).toISOString());
    const insert = this.db.prepare('INSERT OR IGNORE INTO webhook_deliveries (app, delivery, host, deployment_id, received_at) VALUES (?, ?, ?, ?, ?)');
    for (const key of new Set([d.delivery, payloadKey(d.body)])) insert.run(d.app, key, d.host, d.deploymentId, at.toISOString());
  }
}
