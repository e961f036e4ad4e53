//! Questions on the terminal, worded and answered as patronictl's (click's) are:
//! `Text [default]: `, and `Text [y/N]: ` for confirmations.

use super::client::CtlError;
use std::io::{BufRead, Write};

fn ask(text: &str) -> Result<String, CtlError> {
    let mut out = std::io::stdout();
    // A prompt that cannot be shown or answered ends the command, as click's Abort does.
    let _ = write!(out, "{text}");
    let _ = out.flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => {
            let _ = writeln!(out);
            Err(CtlError::Usage("Aborted!".into()))
        }
        Ok(_) => Ok(line.trim_end_matches(['\n', '\r']).to_string()),
    }
}

/// Asks for a value; an empty answer takes `default`.
pub fn prompt(text: &str, default: Option<&str>) -> Result<String, CtlError> {
    let shown = match default {
        Some(d) => format!("{text} [{d}]: "),
        None => format!("{text}: "),
    };
    loop {
        let a = ask(&shown)?;
        let a = a.trim();
        if !a.is_empty() {
            return Ok(a.to_string());
        }
        if let Some(d) = default {
            return Ok(d.to_string());
        }
    }
}

/// Asks yes or no; the default is no.
pub fn confirm(text: &str) -> Result<bool, CtlError> {
    loop {
        match ask(&format!("{text} [y/N]: "))?
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "y" | "yes" => return Ok(true),
            "" | "n" | "no" => return Ok(false),
            _ => println!("Error: invalid input"),
        }
    }
}

/// Asks for a secret without echoing it (click's `hide_input`). Echo is switched off with
/// `stty`, which works on any terminal without a terminal library; when stdin is not a
/// terminal the answer is read as typed.
pub fn password(text: &str) -> Result<String, CtlError> {
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let hidden = stty("-echo");
    let answer = ask(&format!("{text}: "));
    if hidden {
        stty("echo");
        println!();
    }
    answer
}
