// Credentials in an http(s) repo URL (`https://user:TOKEN@host/org/app.git`) never reach git's
// command line, where every local user can read them (/proc/PID/cmdline, `ps`): git is given the
// bare URL, and the credentials through a credential helper that git consults only for that
// origin (scheme, host and port), fed from the environment (readable by the agent's user only).
// The helper text is a constant: the values are never parsed by a shell, only printed.

export interface GitRemote {
  /** What goes on git's command line: the URL without user name or password. */
  url: string;
  /** Extra environment for git: the scoped helper and the credentials (empty for other URLs). */
  env: Record<string, string>;
}

/** Prints the credentials for `get` (git also calls helpers with `store` and `erase`: ignored). */
const HELPER = `!f() { cat >/dev/null; test "$1" = get || exit 0; printf 'username=%s\\npassword=%s\\n' "$BERTH_GIT_USERNAME" "$BERTH_GIT_PASSWORD"; }; f`;

export function gitRemote(repo: string): GitRemote {
  let u: URL;
  try {
    u = new URL(repo);
  } catch {
    return { url: repo, env: {} }; // scp-like `user@host:path`: SSH, no secret in it
  }
  if ((u.protocol !== 'https:' && u.protocol !== 'http:') || (!u.username && !u.password)) return { url: repo, env: {} };
  const username = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  u.username = '';
  u.password = '';
  const origin = `${u.protocol}//${u.host}`;
  return {
    url: u.toString(),
    env: {
      // An empty value first: helpers from system or user config are not asked for this origin.
      GIT_CONFIG_COUNT: '2',
      GIT_CONFIG_KEY_0: `credential.${origin}.helper`,
      GIT_CONFIG_VALUE_0: '',
      GIT_CONFIG_KEY_1: `credential.${origin}.helper`,
      GIT_CONFIG_VALUE_1: HELPER,
      BERTH_GIT_USERNAME: username,
      BERTH_GIT_PASSWORD: password,
    },
  };
}
