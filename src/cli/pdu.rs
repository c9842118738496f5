//! `smpp-proxy pdu decode|encode`: one PDU between hex and JSON (format in `pdu::json`).

use clap::Subcommand;
use smpp_proxy::pdu::json::{pdu_from_json, pdu_to_json};
use smpp_proxy::pdu::{decode_exact, Pdu};
use smpp_proxy::{hex, receipt::Receipt};
use std::io::{Read, Write};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(crate) enum PduCommand {
    /// Print one PDU given as hex as a JSON object (exit 1 and say where, if malformed).
    Decode {
        /// The PDU in hex (spaces and colons allowed); `-` or nothing reads standard input.
        hex: Option<String>,
        /// One line instead of indented JSON.
        #[arg(long)]
        compact: bool,
    },
    /// Read the JSON form of `decode` on standard input and print the PDU's hex.
    Encode,
}

fn read_stdin() -> Result<String, String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("reading standard input: {e}"))?;
    Ok(text)
}

/// The JSON the decode command prints for `pdu`: its fields, and its receipt if it is one.
pub(crate) fn describe(pdu: &Pdu) -> serde_json::Value {
    let mut o = pdu_to_json(pdu);
    if let Some(receipt) = Receipt::from_pdu(pdu) {
        o.insert("receipt".to_owned(), serde_json::Value::Object(receipt.to_json()));
    }
    serde_json::Value::Object(o)
}

fn decode(hex_arg: Option<String>, compact: bool) -> Result<String, String> {
    let text = match hex_arg.as_deref() {
        None | Some("-") => read_stdin()?,
        Some(h) => h.to_owned(),
    };
    let bytes = hex::decode(&text).map_err(|e| format!("bad hex: {e}"))?;
    let pdu = decode_exact(&bytes).map_err(|e| e.to_string())?;
    let json = describe(&pdu);
    let out = if compact {
        serde_json::to_string(&json)
    } else {
        serde_json::to_string_pretty(&json)
    };
    out.map_err(|e| e.to_string())
}

fn encode() -> Result<String, String> {
    let text = read_stdin()?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("bad JSON: {e}"))?;
    let pdu = pdu_from_json(&value).map_err(|problems| problems.join("\n"))?;
    let bytes = pdu.to_bytes().map_err(|e| e.to_string())?;
    Ok(hex::encode(&bytes))
}

impl PduCommand {
    pub(crate) fn run(self) -> ExitCode {
        let result = match self {
            PduCommand::Decode { hex, compact } => decode(hex, compact),
            PduCommand::Encode => encode(),
        };
        match result {
            Ok(out) => {
                let mut stdout = std::io::stdout().lock();
                // A closed pipe (`| head`) is not an error worth a message.
                let _ = writeln!(stdout, "{out}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        }
    }
}
