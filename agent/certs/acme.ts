// The ACME order code is shared with the control plane (its own HTTPS certificate): shared/acme.ts.
export * from '../../shared/acme.js';
