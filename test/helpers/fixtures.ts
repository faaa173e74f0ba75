// Small fixtures shared by the end-to-end suites.

/** A Dockerfile serving the repo's files with busybox httpd on $PORT; `extra` lines go before CMD. */
export const busyboxDockerfile = (extra = '') => `FROM berth-test/busybox:latest
COPY . /www
${extra}
CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]
`;

/** A deployment as `berth … --json` prints it. */
export interface DeploymentJson {
  id: string;
  app: string;
  status: string;
  commit: string | null;
  reason: string | null;
  trigger: string;
  createdAt: string;
  finishedAt: string | null;
}
