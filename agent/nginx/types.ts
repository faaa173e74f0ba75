// The nginx module's public types and its one error class (re-exported by the facade, index.ts).

export class NginxError extends Error {
  override name = 'NginxError';
}

export interface NginxSettings {
  /** Set: berth owns a private nginx under this prefix (writes nginx.conf, starts it). Unset: system nginx in /etc/nginx. */
  prefix?: string;
  httpPort: number;
  /** The nginx binary (default: /usr/sbin/nginx when present, else `nginx` from PATH). */
  nginxBin?: string;
  /** System mode: where per-app files go (default /etc/nginx/conf.d, which Debian's nginx.conf includes). */
  confDir?: string;
  /** How long a reload may take to show up before it counts as failed (default 5000 ms). */
  verifyTimeoutMs?: number;
  /** HTTPS port (unset or 0: no HTTPS listener and no TLS server blocks). */
  httpsPort?: number;
  /** Directory served at /.well-known/acme-challenge/ on every host (unset: no challenge locations). */
  acmeWebroot?: string;
  /**
   * The certificate an app's server block uses right now (null: plain HTTP only). Asked at render
   * time, so a deploy's switch keeps the app's HTTPS and a new certificate shows up as a config change.
   */
  tlsFor?: (app: string) => AppTls | null;
}

/** A certificate for an app's HTTPS server block. Paths are stable (renewals only need a reload). */
export interface AppTls {
  certPath: string;
  keyPath: string;
  /** The names the certificate covers: only these get HTTPS and the HTTP → HTTPS redirect. */
  domains: string[];
}

/** An app's certificate nginx must present after a change (for the first of `domains`). */
export type TlsCheck = AppTls;

/**
 * What one app's server block routes: its domains to the web containers' published ports, or, for
 * a static site, to a release directory served from disk.
 */
export type AppSite =
  | {
      domains: string[];
      upstreamPort: number;
      /** Every web replica's port when the web process is scaled (upstreamPort is the first). */
      upstreamPorts?: number[];
      /**
       * Cluster mode: every healthy web task as "ADDRESS:PORT" on the cluster's nodes; when set it
       * replaces the 127.0.0.1 ports (upstreamPort is then the first server's port).
       */
      upstreamServers?: string[];
      staticRoot?: undefined;
      /** Overrides NginxSettings.tlsFor for this render (null: no HTTPS). */
      tls?: AppTls | null;
    }
  | { domains: string[]; staticRoot: string; upstreamPort?: undefined; upstreamPorts?: undefined; upstreamServers?: undefined; tls?: AppTls | null };
