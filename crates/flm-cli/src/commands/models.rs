//! `flm models list`.

use flm_core::ModelInfo;

use crate::app::App;
use crate::cli::ModelsCmd;
use crate::commands::Progress;
use crate::output::{table, CliError, Printer};

fn capabilities(m: &ModelInfo) -> String {
    let mut caps = Vec::new();
    if m.supports_chat {
        caps.push("chat");
    }
    if m.supports_embeddings {
        caps.push("embeddings");
    }
    if m.vision {
        caps.push("vision");
    }
    if m.audio_inputs {
        caps.push("audio");
    }
    if m.tools {
        caps.push("tools");
    }
    if m.reasoning {
        caps.push("reasoning");
    }
    caps.join(",")
}

pub(crate) async fn run(app: &App, cmd: ModelsCmd, printer: &Printer) -> Result<(), CliError> {
    match cmd {
        ModelsCmd::List { engine } => {
            let listing = {
                let _p = Progress::start(printer, "Listing models");
                app.engines.list_models(engine.as_deref()).await?
            };
            printer.success(&listing, || {
                let mut out = if listing.models.is_empty() {
                    "No models found: no running engine lists any model. Check `flm engines detect --fresh`.\n".to_owned()
                } else {
                    let rows: Vec<Vec<String>> = listing
                        .models
                        .iter()
                        .map(|m| {
                            vec![
                                m.id.to_string(),
                                m.context_length.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                                capabilities(m),
                            ]
                        })
                        .collect();
                    table(&["MODEL", "CONTEXT", "CAPABILITIES"], &rows)
                };
                for e in &listing.errors {
                    out.push_str(&format!("warning: {}: {} [{}]\n", e.engine_id, e.message, e.code));
                }
                out
            })
        }
    }
}
