// pino logging for both daemons: JSON in production, pretty on a TTY, secrets redacted.
import pino from 'pino';

export const REDACT = [
  'token', 'credential', 'password', 'secret', 'authorization',
  '*.token', '*.credential', '*.password', '*.secret', '*.authorization', 'headers.authorization', 'env',
  // Swarm join tokens (cluster_request / cluster_response, issue 15), wherever a message is logged.
  'joinToken', '*.joinToken', '*.*.joinToken', '*.*.*.joinToken',
];

export function createLogger(name: string): pino.Logger {
  const level = process.env.BERTH_LOG_LEVEL ?? 'info';
  const pretty = process.stdout.isTTY && process.env.BERTH_LOG_FORMAT !== 'json';
  return pino({
    name,
    level,
    redact: { paths: REDACT, censor: '[redacted]' },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss' } } } : {}),
  });
}
export type Logger = pino.Logger;
