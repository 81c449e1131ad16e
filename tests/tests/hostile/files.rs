//! The files API under attack: concurrent writes of one path, a sandbox process planting
//! symlinks where a write puts its temporary file, a directory whose listing is bigger
//! than one protocol frame, and reads of the kernel's pseudo filesystems (`/proc`,
//! `/sys`), literally or through a symlink planted in the sandbox.

use futures_util::future::join_all;
use sandboxd_e2e::{Daemon, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

fn sha(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// 20 writes of distinct 512 KiB contents to one path at once: every one answers 200
/// and the file ends up exactly one of them (never a mix, never a spurious 404).
#[tokio::test]
async fn concurrent_writes_of_one_path_each_land_whole() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let contents: Vec<String> = (0..20)
        .map(|i| {
            let line = format!("writer {i:02} ");
            line.repeat(512 * 1024 / line.len())
        })
        .collect();
    let writes = contents.iter().map(|content| {
        d.files(
            &id,
            "POST",
            "",
            Some(json!({ "files": { "race/one.txt": content } })),
        )
    });
    let started = std::time::Instant::now();
    let answers = join_all(writes).await;
    eprintln!(
        "20 concurrent 512 KiB writes of one path: {:?}",
        started.elapsed()
    );
    for (i, (status, body)) in answers.into_iter().enumerate() {
        assert_eq!(status, StatusCode::OK, "writer {i}: {body}");
    }
    let (status, file) = d.files(&id, "GET", "?path=race/one.txt", None).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    let got = sha(file["content"].as_str().expect("content"));
    let winner = contents.iter().position(|c| sha(c) == got);
    eprintln!("concurrent writes: writer {winner:?} won");
    assert!(winner.is_some(), "the file is no single write's content");
    let leftovers = d.exec(&id, "ls -A race").await;
    assert_eq!(leftovers["stdout"], "one.txt\n", "{leftovers}");
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

/// A sandbox process keeps planting symlinks to a sentinel at the names a write could
/// use for its temporary file: no write lands in the sentinel, and the written path is
/// a regular file holding the last write.
#[tokio::test]
async fn planted_symlinks_cannot_redirect_a_write() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    d.exec(&id, "mkdir w && echo untouched > sentinel").await;
    // The predictable names an earlier version used (`.NAME.sandboxd-PID-INDEX`), and
    // whatever temp-looking name shows up beside the target: replaced by a symlink.
    let exec = format!("/v1/sandboxes/{id}/exec");
    let planter = d.call(
        "POST",
        &exec,
        Some(json!({ "command": "cd w; end=$((SECONDS+6)); n=0; \
            while [ $SECONDS -lt $end ]; do \
              for i in 0 1 2; do ln -sfn /home/user/sentinel .target.sandboxd-1-$i; done; \
              n=$((n+1)); done; echo $n" })),
    );
    let writer = async {
        let mut last = String::new();
        for round in 0..40 {
            last = format!("round {round}\n");
            let (status, body) = d
                .files(
                    &id,
                    "POST",
                    "",
                    Some(json!({ "files": [
                    { "path": "w/target", "content": last },
                    { "path": "w/target2", "content": last }
                ] })),
                )
                .await;
            assert!(
                status == StatusCode::OK || status.is_client_error(),
                "round {round}: {status} {body}"
            );
        }
        last
    };
    let ((status, planted), last) = tokio::join!(planter, writer);
    assert_eq!(status, StatusCode::OK, "{planted}");
    eprintln!("planter loops: {}", planted["stdout"]);
    let sentinel = d.exec(&id, "cat sentinel").await;
    assert_eq!(sentinel["stdout"], "untouched\n", "a write was redirected");
    // A final write with nobody planting: the target is a regular file with it.
    let (status, body) = d
        .files(
            &id,
            "POST",
            "",
            Some(json!({ "files": { "w/target": last } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let kind = d
        .exec(
            &id,
            "test -f w/target && ! test -L w/target && cat w/target",
        )
        .await;
    assert_eq!(kind["stdout"], last, "{kind}");
    let sentinel = d.exec(&id, "cat sentinel").await;
    assert_eq!(sentinel["stdout"], "untouched\n", "a write was redirected");
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

/// 6,000 entries of 200-character names (a listing of several MiB, far past one frame)
/// list completely; a listing past the daemon's entry bound is a clear 413, never a 502.
#[tokio::test]
async fn a_listing_bigger_than_a_frame_works_and_a_huge_one_is_a_clear_error() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let made = d
        .exec(
            &id,
            "mkdir -p big && cd big && for i in $(seq 6000); do : > \"$(printf '%0200d' $i)\"; done; ls | wc -l",
        )
        .await;
    assert_eq!(made["stdout"], "6000\n", "{made}");
    let started = std::time::Instant::now();
    let (status, list) = d.files(&id, "GET", "/list?path=big", None).await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{list}");
    let entries = list.as_array().expect("array");
    assert_eq!(entries.len(), 6000);
    let first = format!("/home/user/big/{:0200}", 1);
    assert_eq!(entries[0]["path"], first.as_str());
    assert!(
        entries
            .windows(2)
            .all(|w| w[0]["path"].as_str() < w[1]["path"].as_str()),
        "entries are sorted by path"
    );
    eprintln!(
        "listed 6000 long names in {elapsed:?}: {} bytes of JSON",
        serde_json::to_vec(&list).map(|v| v.len()).unwrap_or(0)
    );

    // Past the bound (50,000 entries): refused with a message saying so.
    let made = d
        .exec(
            &id,
            "mkdir huge && cd huge && seq 50001 | xargs touch && ls | wc -l",
        )
        .await;
    assert_eq!(made["stdout"], "50001\n", "{made}");
    let started = std::time::Instant::now();
    let (status, body) = d.files(&id, "GET", "/list?path=huge", None).await;
    eprintln!("50,001 entries refused in {:?}", started.elapsed());
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("more than 50000 entries"), "{body}");
    // And the sandbox still serves.
    let (status, _) = d.files(&id, "GET", "/list?path=big&depth=1", None).await;
    assert_eq!(status, StatusCode::OK);
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

/// `/proc` and `/sys` are the kernel's, not the sandbox's files: reading, listing,
/// describing or writing them is refused (403), also through a symlink planted in the
/// sandbox; a listing of `/` does not descend into them.
#[tokio::test]
async fn pseudo_filesystems_are_refused_even_through_symlinks() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    d.exec(
        &id,
        "ln -s /proc/1/maps maps; ln -s /proc/1 pid1; ln -s /sys/kernel sys; ln -s /proc proc",
    )
    .await;
    let refused = [
        ("GET", "?path=/proc/1/maps"),
        ("GET", "?path=/proc/self/environ"),
        ("GET", "?path=/proc/1/environ"),
        ("GET", "?path=/proc/1/root/etc/hostname"),
        ("GET", "?path=maps"),
        ("GET", "?path=pid1/environ"),
        ("GET", "?path=/sys/kernel/mm/transparent_hugepage/enabled"),
        ("GET", "?path=sys/mm/transparent_hugepage/enabled"),
        ("GET", "/list?path=/proc"),
        ("GET", "/list?path=proc"),
        ("GET", "/list?path=/proc/1/fd"),
        ("GET", "/list?path=/sys"),
        ("GET", "/info?path=/proc/1/fd/0"),
        ("GET", "/info?path=pid1/environ"),
    ];
    for (method, rest) in refused {
        let (status, body) = d.files(&id, method, rest, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {rest}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("pseudo filesystem"),
            "{method} {rest}: {body}"
        );
    }
    let (status, body) = d
        .files(
            &id,
            "POST",
            "",
            Some(json!({ "files": { "pid1/comm": "x" } })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // The symlink itself is a file of the sandbox: describing it is fine.
    let (status, link) = d.files(&id, "GET", "/info?path=maps", None).await;
    assert_eq!(status, StatusCode::OK, "{link}");
    assert_eq!(link["symlinkTarget"], "/proc/1/maps");
    // `/` lists /proc and /sys as entries but not what is inside them.
    let (status, list) = d.files(&id, "GET", "/list?path=/&depth=2", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let paths: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"/proc") && paths.contains(&"/etc/hostname"),
        "{paths:?}"
    );
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("/proc/") || p.starts_with("/sys/")),
        "{paths:?}"
    );
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

/// A sandbox process dates a file before 1970 (`touch -d 1960-01-01`), which RFC 3339 as
/// the API writes it cannot express: the listing and the info of that file answer with
/// the earliest time it can write, and the daemon goes on serving.
#[tokio::test]
async fn a_file_dated_before_1970_is_listed_not_a_crash() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let dated = d
        .exec(
            &id,
            "mkdir -p dated && touch -d 1960-01-01 dated/old && stat -c %Y dated/old",
        )
        .await;
    assert!(
        dated["stdout"].as_str().is_some_and(|s| s.starts_with('-')),
        "the file is not dated before 1970: {dated}"
    );
    let (status, listing) = d.files(&id, "GET", "/list?path=dated", None).await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let (status, info) = d.files(&id, "GET", "/info?path=dated/old", None).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["modifiedTime"], "1970-01-01T00:00:00.000Z", "{info}");
    assert!(
        listing.to_string().contains("1970-01-01T00:00:00.000Z"),
        "{listing}"
    );
    let (status, _) = d.call("GET", "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}
