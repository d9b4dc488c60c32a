//! What phantom_ci installs on the machine: the `post-receive` hook of a bare repository and the
//! systemd units that run `tick`.

pub mod hook_template;
pub mod systemd;
