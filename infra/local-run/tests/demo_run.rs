//! README command one, end to end: the local run on embedded defaults produces its summary.

use std::process::Command;

#[test]
fn the_demo_runs_and_reports_every_flow() {
    let out = Command::new(env!("CARGO_BIN_EXE_local-run"))
        .args([
            "--once",
            "--port",
            "0",
            "--sim-port",
            "0",
            "--products",
            "200",
            "--orders",
            "6",
        ])
        // Embedded parts only, whatever the caller's environment says.
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("KEYCRM_BASE_URL")
        .env_remove("SHOP_API_BASE_URL")
        .env("RUST_LOG", "error")
        .output()
        .expect("the local-run binary starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for expected in [
        "full sync completed",
        "6 of 6 pushed to KeyCRM",
        "order 10001 -> processing",
        "webhooks applied 4",
        "unavailable in the shop after",
        "Dead letters  orders 0, statuses 0, sync jobs 0, stock flushes 0",
        // The settings page for the demo shop and for an empty one, token in the fragment.
        "/v1/shops/demo-shop/connection/page#token=",
        "/v1/shops/demo-shop-walkthrough/connection/page#token=",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}
