// A bare Debian 12 for install.sh tests: debootstrap minbase + curl, ca-certificates and the
// distribution's nodejs (18: too old for berth, so the installer must take Node.js from the control
// plane). Built once (~40 s), reused while the tag exists.
import { debianImageOnce } from './debian-image.js';

export const INSTALLER_IMAGE = 'berth-test/installer-base:bookworm';

export const ensureInstallerImage = debianImageOnce({ name: INSTALLER_IMAGE, packages: ['curl', 'ca-certificates', 'nodejs'] });
