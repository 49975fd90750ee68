//! `inproc-instructions`: the in-process cost per request in instructions, which do not move with
//! the machine's load the way wall-clock and on-CPU times do. For each build the harness runs
//! itself under `valgrind --tool=callgrind --separate-threads=yes` as `inproc-calls KIND
//! --requests N` twice (N1 and N2 requests through the `actix_web::test` service, after the same
//! warm-up), and takes the slope of the request thread's instruction count between the two runs:
//! instructions per request on the thread that serves it. The pipelines' own threads (span
//! buffer, exporter, the SDK's batch processor) and the receiver are not counted, as in
//! `inproc`'s on-CPU column.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use actix_web::{test, web};
use metamcp_telemetry::TelemetryManager;

use crate::apps::{bare_app, eco_app, ours_app, ours_settings, BoxError, Eco, Kind};
use crate::load::PATH;
use crate::receiver::Receiver;
use crate::report::{count, Table};

/// Requests before the counted ones (caches, lazily built state, the first export).
const WARM_UP: usize = 1_000;

/// `inproc-calls KIND --requests N` (run under callgrind by [`instructions`]): `WARM_UP` + `N`
/// requests through `kind`'s in-process service, exporting to a receiver of its own.
pub fn calls(kind: Kind, requests: usize) -> Result<(), BoxError> {
    let receiver = Receiver::start()?;
    let system = actix_rt::System::new();
    let n = WARM_UP + requests;
    match kind {
        Kind::Bare => {
            let app = system.block_on(test::init_service(bare_app(web::Data::new(prometheus::Registry::new()))));
            system.block_on(serve_n(&app, n))?;
        }
        Kind::Ours => {
            let settings = ours_settings("instr-ours", &receiver.endpoint(), 0);
            let manager = system.block_on(async { TelemetryManager::initialize(&settings) })?;
            let app = system.block_on(test::init_service(ours_app(&manager)));
            system.block_on(serve_n(&app, n))?;
            system.block_on(manager.shutdown());
        }
        Kind::Eco => {
            let mut eco = Eco::start("instr-eco", &receiver.endpoint())?;
            let app = system.block_on(test::init_service(eco_app(&eco.prom)));
            system.block_on(serve_n(&app, n))?;
            eco.shutdown();
        }
    }
    Ok(())
}

async fn serve_n<S, B>(service: &S, n: usize) -> Result<(), BoxError>
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    for _ in 0..n {
        let response = test::call_service(service, test::TestRequest::get().uri(PATH).to_request()).await;
        if !response.status().is_success() {
            return Err(format!("GET {PATH} answered {}", response.status()).into());
        }
    }
    Ok(())
}

/// The `totals:` of a callgrind output file.
fn totals(path: &Path) -> Result<u64, BoxError> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .find_map(|line| line.strip_prefix("totals:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no totals in {}", path.display()).into())
}

/// Runs `inproc-calls kind --requests n` under callgrind; the request thread's instructions.
fn counted(kind: Kind, n: usize, dir: &Path) -> Result<u64, BoxError> {
    let out = dir.join(format!("{}-{n}.out", kind.label()));
    let status = Command::new("valgrind")
        .args(["--tool=callgrind", "--separate-threads=yes", "--dump-instr=no"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(std::env::current_exe()?)
        .args(["inproc-calls", kind.label(), "--requests", &n.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|err| format!("cannot run valgrind (apt-get install valgrind): {err}"))?;
    if !status.success() {
        return Err(format!("inproc-calls {} under callgrind: {status}", kind.label()).into());
    }
    // The main thread, which runs the actix system and so every request, is thread 1.
    totals(&PathBuf::from(format!("{}-01", out.display())))
}

/// `inproc-instructions`: instructions per request of each build on the request thread, and
/// what ours and the ecosystem stack add over bare.
pub fn instructions(low: usize, high: usize) -> Result<(), BoxError> {
    if high <= low {
        return Err("--high must be above --low".into());
    }
    let dir = std::env::temp_dir().join(format!("metamcp-comparison-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut per_request = Vec::new();
    for kind in Kind::ALL {
        eprintln!("inproc-instructions: {} under callgrind, {low} and {high} requests…", kind.label());
        let slope = (counted(kind, high, &dir)? as f64 - counted(kind, low, &dir)? as f64) / (high - low) as f64;
        per_request.push((kind, slope));
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!("\n### In-process instructions per request (callgrind, request thread; slope {low} → {high} requests)\n");
    let bare = per_request[0].1;
    let mut table = Table::new(&["build", "instructions / request", "added over bare", "× bare"]);
    for (kind, slope) in &per_request {
        table.row(vec![
            kind.label().to_owned(),
            count(*slope),
            match slope - bare {
                _ if *kind == Kind::Bare => "—".to_owned(),
                added if added < 0.0 => format!("−{}", count(-added)),
                added => format!("+{}", count(added)),
            },
            format!("{:.2}×", slope / bare),
        ]);
    }
    println!("{}", table.render());
    Ok(())
}
