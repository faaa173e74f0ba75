import type { Logger } from '../../shared/logger.js';
import type { BackupScheduleStatus } from '../backup/scheduler.js';
import type { DeploymentEvents } from '../events.js';
import type { AgentHub } from '../hub.js';
import type { ReleaseSigner } from '../release-signing.js';
import type { Notifier } from '../notify/index.js';
import type { Stores } from '../store/index.js';

/** What the route modules need from the running control plane. */
export interface ApiDeps {
  stores: Stores;
  hub: AgentHub;
  events: DeploymentEvents;
  logger: Logger;
  adminToken: string;
  /** The control plane's public URL; a function because the port is known only after listen. */
  url(): string;
  /** Where release tarballs for install.sh are (default: $BERTH_RELEASE_DIR, else PACKAGE_ROOT/release). */
  releaseDir?: string;
  /** Scheduled backups (--backup-schedule), for GET /api/control-plane/status. */
  backups?: { status(): BackupScheduleStatus };
  /** Signs the releases, Node.js binary and install.sh served to servers (DATA/release-key.pem). */
  releaseSigner: ReleaseSigner;
  /** Notifications (issue 18): channels, test, delivery log. */
  notify?: Notifier;
}
