//! What phantom_ci installs on the machine: the `post-receive` hook of a bare repository, and the
//! systemd units or the crontab line that run `tick`.

pub mod cron;
pub mod hook_template;
pub mod systemd;
