//! An instrumented actix-web app on a loopback socket, and the pipeline settings in-process tests
//! start the telemetry library with.

use std::time::Duration;

use metamcp_telemetry::actors::Protocol;
use metamcp_telemetry::settings::Settings;
use metamcp_telemetry::TelemetryManager;

/// Settings for an in-process app exporting to `endpoint` over `protocol`, with short intervals
/// so tests wait little, and a Prometheus endpoint on a free port.
pub fn settings_for(endpoint: &str, protocol: Protocol) -> Settings {
    let mut settings = Settings::default();
    settings.exporter.endpoint = endpoint.to_owned();
    settings.exporter.protocol = protocol;
    settings.exporter.timeout = Duration::from_secs(2);
    settings.exporter.retry.initial_interval = Duration::from_millis(100);
    settings.exporter.retry.max_interval = Duration::from_millis(500);
    settings.span_buffer.flush_interval = Duration::from_millis(100);
    settings.metrics.export_interval = Duration::from_millis(200);
    settings.health.check_interval = Duration::from_millis(100);
    settings.prometheus.port = 0;
    settings.telemetry.install_global = false;
    settings
}

/// An instrumented actix-web app on a loopback socket.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Stops the server.
    pub handle: actix_web::dev::ServerHandle,
}

mod handlers {
    use actix_web::{error, web, HttpResponse};

    pub(super) async fn ok() -> HttpResponse {
        HttpResponse::Ok().body("ok")
    }

    pub(super) async fn fail() -> HttpResponse {
        HttpResponse::InternalServerError().body("boom")
    }

    pub(super) async fn create(path: web::Path<u32>) -> HttpResponse {
        HttpResponse::Created().body(path.into_inner().to_string())
    }

    pub(super) async fn unavailable() -> Result<HttpResponse, actix_web::Error> {
        Err(error::ErrorServiceUnavailable("not now"))
    }
}

impl TestApp {
    /// Starts the app: `GET /ok` (200), `GET /fail` (500), `POST /items/{id}` (201),
    /// `GET /unavailable` (handler `Err`, 503), the health routes, and a JSON 404 otherwise.
    pub async fn start(manager: &TelemetryManager) -> TestApp {
        use actix_web::{web, App, HttpServer};
        let manager = manager.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(manager.middleware())
                .app_data(web::Data::new(manager.clone()))
                .configure(metamcp_telemetry::http::health_routes)
                .route("/ok", web::get().to(handlers::ok))
                .route("/fail", web::get().to(handlers::fail))
                .route("/items/{id}", web::post().to(handlers::create))
                .route("/unavailable", web::get().to(handlers::unavailable))
                .default_service(web::to(metamcp_telemetry::http::not_found))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("bind");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        TestApp { base: format!("http://{addr}"), handle }
    }

    /// `path` on the app's address.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}
