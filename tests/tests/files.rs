//! The files API end to end, through sandbox-init: every verb of the SDK's files
//! client, both write shapes, binary round trips, atomicity, and the errors.

use sandboxd_e2e::{Daemon, StatusCode};
use serde_json::{json, Value};

fn q(path: &str) -> String {
    // Minimal query encoding for the paths used here.
    path.replace('%', "%25")
        .replace(' ', "%20")
        .replace('&', "%26")
        .replace('#', "%23")
}

#[tokio::test]
async fn every_verb_of_the_files_client() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;

    // Write, list shape (API reference) with several files and created parents.
    let (status, written) = d
        .files(
            &id,
            "POST",
            "",
            Some(json!({ "files": [
            { "path": "/home/user/workspace/hello.txt", "content": "Hello world!" },
            { "path": "workspace/deep/nested/config.json", "content": "{\"key\": \"value\"}" }
        ] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{written}");
    assert_eq!(
        written["files"].as_array().map(Vec::len),
        Some(2),
        "{written}"
    );
    // Map shape (SDK), relative paths under /home/user.
    let (status, body) = d
        .files(
            &id,
            "POST",
            "",
            Some(json!({ "files": { "src/a.txt": "A", "b.txt": "" } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Read.
    let (status, file) = d.files(&id, "GET", "?path=workspace/hello.txt", None).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    assert_eq!(file["path"], "/home/user/workspace/hello.txt");
    assert_eq!(file["content"], "Hello world!");
    let (_, empty) = d.files(&id, "GET", "?path=b.txt", None).await;
    assert_eq!(empty["content"], "");

    // Ownership of files and created parents.
    let out = d
        .exec(&id, "stat -c '%U:%G %a %n' workspace/deep workspace/deep/nested workspace/deep/nested/config.json src/a.txt")
        .await;
    assert_eq!(
        out["stdout"],
        "user:user 755 workspace/deep\nuser:user 755 workspace/deep/nested\n\
         user:user 644 workspace/deep/nested/config.json\nuser:user 644 src/a.txt\n",
        "{out}"
    );

    // Info: every field of FileEntryInfo.
    let (status, info) = d
        .files(&id, "GET", "/info?path=workspace/hello.txt", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["name"], "hello.txt");
    assert_eq!(info["path"], "/home/user/workspace/hello.txt");
    assert_eq!(info["type"], "file");
    assert_eq!(info["size"], 12);
    assert_eq!(info["mode"], 0o644);
    assert_eq!(info["permissions"], "-rw-r--r--");
    assert_eq!(info["owner"], "user");
    assert_eq!(info["group"], "user");
    assert!(
        info["modifiedTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{info}"
    );
    d.exec(&id, "ln -s workspace/hello.txt link").await;
    let (_, link) = d.files(&id, "GET", "/info?path=link", None).await;
    assert_eq!(link["symlinkTarget"], "workspace/hello.txt", "{link}");
    let (_, dir) = d.files(&id, "GET", "/info?path=workspace", None).await;
    assert_eq!(dir["type"], "dir");
    assert_eq!(dir["permissions"], "drwxr-xr-x");

    // List with depth.
    let (status, list) = d.files(&id, "GET", "/list?path=workspace", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "/home/user/workspace/deep",
            "/home/user/workspace/hello.txt"
        ]
    );
    let (_, list) = d
        .files(&id, "GET", "/list?path=workspace&depth=3", None)
        .await;
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "/home/user/workspace/deep",
            "/home/user/workspace/deep/nested",
            "/home/user/workspace/deep/nested/config.json",
            "/home/user/workspace/hello.txt"
        ]
    );

    // Exists.
    let (_, yes) = d
        .files(&id, "GET", "/exists?path=workspace/hello.txt", None)
        .await;
    let (_, no) = d
        .files(&id, "GET", "/exists?path=workspace/nope.txt", None)
        .await;
    assert_eq!((yes, no), (json!(true), json!(false)));

    // Mkdir: true, then false.
    let (_, first) = d
        .files(&id, "POST", "/mkdir", Some(json!({ "path": "made/here" })))
        .await;
    let (_, again) = d
        .files(&id, "POST", "/mkdir", Some(json!({ "path": "made/here" })))
        .await;
    assert_eq!((first, again), (json!(true), json!(false)));

    // Rename returns the new entry.
    let (status, renamed) = d
        .files(
            &id,
            "POST",
            "/rename",
            Some(json!({ "oldPath": "workspace/hello.txt", "newPath": "made/here/hi.txt" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["path"], "/home/user/made/here/hi.txt");
    assert_eq!(renamed["size"], 12);

    // Remove a file, then a whole directory.
    let (status, _) = d.files(&id, "DELETE", "?path=made/here/hi.txt", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = d.files(&id, "DELETE", "?path=workspace", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, gone) = d.files(&id, "GET", "/exists?path=workspace", None).await;
    assert_eq!(gone, json!(false));

    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn binary_and_large_files_round_trip_intact() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;

    // Every byte value, base64 both ways.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let (status, body) = d.files(&id,
        "POST",
        "",
        Some(json!({ "files": [{ "path": "bin/all.bin", "content": b64, "encoding": "base64" }] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let out = d.exec(&id, "sha256sum bin/all.bin | cut -d' ' -f1").await;
    let expected = sha256_hex(&bytes);
    assert_eq!(
        out["stdout"].as_str().map(str::trim),
        Some(expected.as_str())
    );
    let (_, read) = d
        .files(&id, "GET", "?path=bin/all.bin&encoding=base64", None)
        .await;
    assert_eq!(read["encoding"], "base64");
    assert_eq!(read["content"], b64.as_str());
    // As text it is refused, not mangled.
    let (status, body) = d.files(&id, "GET", "?path=bin/all.bin", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("encoding=base64")));

    // A 2 MiB text file, map shape with encoding for the whole call.
    let big: String = (0..2 * 1024 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let (status, body) = d
        .files(
            &id,
            "POST",
            "",
            Some(json!({ "files": { "big.txt": big } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, read) = d.files(&id, "GET", "?path=big.txt", None).await;
    assert_eq!(read["content"].as_str().map(str::len), Some(big.len()));
    assert!(
        read["content"] == big.as_str(),
        "2 MiB file changed on the way"
    );

    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn writes_are_atomic_and_all_or_nothing() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    d.files(
        &id,
        "POST",
        "",
        Some(json!({ "files": { "keep.txt": "original" } })),
    )
    .await;

    // The second file cannot be written (its parent is a file): nothing changes.
    let (status, body) = d
        .files(
            &id,
            "POST",
            "",
            Some(json!({ "files": { "keep.txt": "changed", "keep.txt/child": "x" } })),
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("keep.txt")),
        "{body}"
    );
    let (_, read) = d.files(&id, "GET", "?path=keep.txt", None).await;
    assert_eq!(read["content"], "original");
    let out = d.exec(&id, "ls -A | grep sandboxd || echo clean").await;
    assert_eq!(out["stdout"], "clean\n", "temporary files left: {out}");

    // A reader never sees half a file while a writer replaces it over and over.
    let a = "a".repeat(256 * 1024);
    let b = "b".repeat(256 * 1024);
    d.files(&id, "POST", "", Some(json!({ "files": { "flip.txt": a } })))
        .await;
    let reader = d.exec(
        &id,
        "for i in $(seq 1 200); do c=$(sort -u flip.txt | wc -l); \
         s=$(stat -c %s flip.txt); [ \"$c\" = 1 ] && [ \"$s\" = 262144 ] || echo torn; done; echo checked",
    );
    let writer = async {
        for i in 0..20 {
            let content = if i % 2 == 0 { &b } else { &a };
            d.files(
                &id,
                "POST",
                "",
                Some(json!({ "files": { "flip.txt": content } })),
            )
            .await;
        }
    };
    let (out, ()) = tokio::join!(reader, writer);
    assert_eq!(out["stdout"], "checked\n", "{out}");

    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn file_errors_are_clear_and_change_nothing() {
    let d = Daemon::start_with(sandboxd_e2e::Options {
        args: vec!["--max-body-bytes".into(), "1048576".into()],
        ..Default::default()
    })
    .await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    d.exec(&id, "mkdir -p adir && echo x > afile").await;

    let cases: Vec<(&str, String, Option<Value>, StatusCode, &str)> = vec![
        (
            "GET",
            "?path=missing.txt".into(),
            None,
            StatusCode::NOT_FOUND,
            "/home/user/missing.txt",
        ),
        (
            "GET",
            "?path=adir".into(),
            None,
            StatusCode::BAD_REQUEST,
            "/home/user/adir",
        ),
        (
            "GET",
            "/list?path=afile".into(),
            None,
            StatusCode::BAD_REQUEST,
            "/home/user/afile",
        ),
        (
            "GET",
            "/list?path=missing".into(),
            None,
            StatusCode::NOT_FOUND,
            "missing",
        ),
        (
            "GET",
            "/list?path=adir&depth=0".into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "depth",
        ),
        (
            "GET",
            "/info?path=missing".into(),
            None,
            StatusCode::NOT_FOUND,
            "missing",
        ),
        (
            "GET",
            "?path=".into(),
            None,
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            "GET",
            "?path=a%00b".into(),
            None,
            StatusCode::BAD_REQUEST,
            "NUL",
        ),
        ("GET", "".into(), None, StatusCode::BAD_REQUEST, "path"),
        (
            "GET",
            format!("?path={}", q("/.sandboxd/run/init.sock")),
            None,
            StatusCode::BAD_REQUEST,
            "reserved",
        ),
        (
            "DELETE",
            "?path=missing".into(),
            None,
            StatusCode::NOT_FOUND,
            "missing",
        ),
        (
            "POST",
            "".into(),
            Some(json!({ "files": { "": "x" } })),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            "POST",
            "".into(),
            Some(json!({ "files": { "a\u{0}": "x" } })),
            StatusCode::BAD_REQUEST,
            "NUL",
        ),
        (
            "POST",
            "".into(),
            Some(json!({ "files": 3 })),
            StatusCode::BAD_REQUEST,
            "files as",
        ),
        (
            "POST",
            "".into(),
            Some(json!({ "files": [{ "path": "x", "content": "!!", "encoding": "base64" }] })),
            StatusCode::BAD_REQUEST,
            "base64",
        ),
        (
            "POST",
            "".into(),
            Some(json!({ "files": {} })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "nothing to write",
        ),
        (
            "POST",
            "".into(),
            Some(json!({ "files": { "/etc/owned-by-root": "x" } })),
            StatusCode::FORBIDDEN,
            "/etc/owned-by-root",
        ),
        (
            "POST",
            "/mkdir".into(),
            Some(json!({ "path": "afile" })),
            StatusCode::CONFLICT,
            "afile",
        ),
        (
            "POST",
            "/rename".into(),
            Some(json!({ "oldPath": "missing", "newPath": "x" })),
            StatusCode::NOT_FOUND,
            "missing",
        ),
        (
            "POST",
            "/rename".into(),
            Some(json!({ "from": "a" })),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
    ];
    for (method, rest, body, status, needle) in cases {
        let (got, json) = d.files(&id, method, &rest, body.clone()).await;
        assert_eq!(got, status, "{method} {rest} {body:?}: {json}");
        let message = json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{method} {rest} {body:?}: {json}");
    }

    // Over the body limit: 413, and nothing written.
    let big = "x".repeat(2 * 1024 * 1024);
    let (status, body) = d
        .files(
            &id,
            "POST",
            "",
            Some(json!({ "files": { "big.txt": big } })),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (_, exists) = d.files(&id, "GET", "/exists?path=big.txt", None).await;
    assert_eq!(exists, json!(false));
    // A file bigger than the limit cannot be read back whole: 413 too.
    d.exec(&id, "head -c 2000000 /dev/zero > zeros").await;
    let (status, body) = d.files(&id, "GET", "?path=zeros", None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    // The socket is out of the user's reach.
    let out = d.exec(&id, "ls /.sandboxd/run 2>&1; echo exit=$?").await;
    assert!(
        out["stdout"]
            .as_str()
            .is_some_and(|s| s.contains("Permission denied")),
        "{out}"
    );

    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
