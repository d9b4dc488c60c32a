//! The test harness: libtest-mimic instead of libtest, so that a test which cannot run here (no root, no
//! `bwrap`, no `python3`, …) is reported as **ignored, with its reason** where `cargo test` shows it,
//! instead of passing silently or failing.
//!
//! A test is a plain `fn name()` that panics on failure, registered in its module's `tests!` list (an
//! unregistered test is dead code, which clippy refuses). A test that finds something it needs missing
//! calls [`skip!`](crate::skip), which unwinds with a [`Skip`] that the harness turns into "ignored".

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use libtest_mimic::{Completion, Trial};

/// The payload of a test that cannot run here.
pub struct Skip(pub String);

/// Ends the calling test as "ignored" with `reason`.
pub fn skip(reason: String) -> ! {
    std::panic::panic_any(Skip(reason))
}

/// Ends the calling test as "ignored": `skip!("needs bwrap (apt-get install bubblewrap)")`.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {
        $crate::support::harness::skip(format!($($arg)*))
    };
}

/// Lists a module's tests: `tests! { first_test, second_test, inner::third_test }`.
#[macro_export]
macro_rules! tests {
    ($($test:path),* $(,)?) => {
        pub fn tests() -> Vec<libtest_mimic::Trial> {
            vec![$($crate::support::harness::trial(module_path!(), stringify!($test), $test)),*]
        }
    };
}

/// One test: `module::name` (as libtest names them), run with skips turned into "ignored".
pub fn trial(module: &str, name: &str, test: fn()) -> Trial {
    let module = module.split_once("::").map_or("", |(_, rest)| rest);
    let name = format!("{module}::{}", name.replace(' ', ""));
    Trial::ignorable_test(name, move || match catch_unwind(AssertUnwindSafe(test)) {
        Ok(()) => Ok(Completion::Completed),
        Err(payload) => match payload.downcast::<Skip>() {
            Ok(skip) => Ok(Completion::ignored_with(skip.0)),
            Err(payload) => resume_unwind(payload),
        },
    })
}

/// A panic hook that stays quiet for skips and prints every other panic as usual.
pub fn quiet_skips() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload().is::<Skip>() {
            default(info);
        }
    }));
}
