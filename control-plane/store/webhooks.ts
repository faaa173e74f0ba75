// Per-app webhook secrets (sealed at rest: the push secret is an HMAC key and `berth app show` prints
// both, so they cannot be stored as hashes) and the webhook deliveries already acted on, so a
// redelivered event never deploys twice.
import type { WebhookSecrets } from '../../shared/api.js';
import { newCliSafeSecret as newSecret } from '../tokens.js';
import type { SecretBox } from '../secret-box.js';
import { now, type Db } from './db.js';

/** How long a delivery id is remembered (hosts let users redeliver for a few days). */
export const DELIVERY_MEMORY_MS = 30 * 24 * 60 * 60 * 1000;

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

  /** Remember a delivery that was acted on (call inside the transaction that creates its deployment). */
  remember(d: { app: string; delivery: string; host: string; deploymentId: string | null }, at = new Date()): void {
    this.db.prepare('DELETE FROM webhook_deliveries WHERE received_at < ?').run(new Date(at.getTime() - DELIVERY_MEMORY_MS).toISOString());
    this.db
      .prepare('INSERT INTO webhook_deliveries (app, delivery, host, deployment_id, received_at) VALUES (?, ?, ?, ?, ?)')
      .run(d.app, d.delivery, d.host, d.deploymentId, at.toISOString());
  }
}
