/** pimc's version (package.json's; `pimc --version`, and part of a sweep point's key). */
export const PIMC_VERSION = "0.1.0";
