//! Running the config's `[[job]]`s without the daemon: their schedules translated into systemd
//! `OnCalendar=` specs and crontab fields ([`calendar`]), and the unit and cron files that run
//! them ([`files`]). `coffer schedule install|status|remove` writes, finds and removes those
//! files; the daemon and the dashboard can show the same translation.

pub mod calendar;
pub mod files;

pub use calendar::{cron_fields, on_calendar, same_as_host};
pub use files::{
    cron_blocks, cron_quote, generated, systemd_quote, unit_name, CronBlock, Generator, CRON_FILE,
    LOG_DIR, MARKER, UNIT_DIR,
};
