// Cancelling a deploy: the control plane no longer wants it (superseded by a newer one while
// queued, or cancelled by a user). Used as the abort reason of a running deploy.
export class DeployCancelled extends Error {
  override name = 'DeployCancelled';
  constructor(
    readonly status: 'cancelled' | 'superseded',
    reason?: string,
  ) {
    super(reason ?? (status === 'superseded' ? 'superseded by a newer deploy' : 'cancelled'));
  }
}
