use super::*;
use serde_json::json;

fn log(yaml: &str) -> Log {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn patroni_levels_and_logger_names_map_to_tracing_directives() {
    assert_eq!(map_level("WARNING"), Some("warn"));
    assert_eq!(map_level("critical"), Some("error"));
    assert_eq!(map_level("LOUD"), None);
    assert_eq!(map_logger("patroni.postgresql").unwrap(), ["pgwarden::postgres"]);
    assert_eq!(
        map_logger("patroni.postgresql.callback_executor").unwrap(),
        ["pgwarden::ha::callbacks"]
    );
    assert_eq!(map_logger("patroni.ha").unwrap(), ["pgwarden::ha"]);
    assert!(map_logger("patroni.dcs.etcd3")
        .unwrap()
        .contains(&"pgwarden_raft".to_string()));
    assert_eq!(map_logger("pgwarden::ha::sync").unwrap(), ["pgwarden::ha::sync"]);
    assert_eq!(map_logger("urllib3"), None);

    let l = log("level: WARNING\nloggers: {patroni.postgresql: DEBUG, urllib3: ERROR}\n");
    let (dirs, unmapped) = filter_directives(&l).unwrap();
    assert_eq!(dirs, "warn,openraft=warn,pgwarden::postgres=debug");
    assert_eq!(unmapped, ["urllib3"]);
    let e = filter_directives(&log("level: LOUD\n")).unwrap_err();
    assert!(e.to_string().starts_with("log.level:"), "{e}");
    let e = filter_directives(&log("loggers: {patroni.ha: NOISY}\n")).unwrap_err();
    assert!(e.to_string().starts_with("log.loggers:"), "{e}");
}

#[test]
fn format_strings_and_lists_choose_the_fields() {
    assert_eq!(
        parse_format("%(asctime)s %(levelname)-8s: %(message)s 100%%"),
        vec![
            Piece::Attr("asctime".into()),
            Piece::Text(" ".into()),
            Piece::Attr("levelname".into()),
            Piece::Text(": ".into()),
            Piece::Attr("message".into()),
            Piece::Text(" 100%".into()),
        ]
    );
    let f = json_fields(Some(
        &json!(["message", {"levelname": "level"}, {"asctime": "@timestamp"}]),
    ))
    .unwrap();
    assert_eq!(
        f[1],
        FieldSpec {
            attr: "levelname".into(),
            key: "level".into()
        }
    );
    assert_eq!(f[2].key, "@timestamp");
    assert!(json_fields(Some(&json!(["nonsense"]))).is_err());
    assert!(matches!(
        line_format(&log("level: INFO\n")).unwrap(),
        LineFormat::Default
    ));
    assert!(matches!(
        line_format(&log("type: json\n")).unwrap(),
        LineFormat::Json { .. }
    ));
    assert!(matches!(
        line_format(&log("dateformat: '%H'\n")).unwrap(),
        LineFormat::Plain(_)
    ));
    let e = line_format(&log("type: xml\n")).unwrap_err();
    assert!(e.to_string().starts_with("log.type:"), "{e}");
}

#[test]
fn file_modes_read_as_patroni_writes_them() {
    assert_eq!(file_mode(0o640).unwrap(), 0o640);
    // `mode: 0640` in YAML 1.2 is the decimal 640.
    assert_eq!(file_mode(640).unwrap(), 0o640);
    assert_eq!(file_mode(600).unwrap(), 0o600);
    assert!(file_mode(999).is_err());
}

#[test]
fn the_log_file_rotates_by_size_and_keeps_file_num_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = RotatingFile::open(dir.path(), 100, 2, Some(0o640)).unwrap();
    for i in 0..10 {
        f.write_line(format!("line {i:02} {}\n", "x".repeat(30)).as_bytes())
            .unwrap();
    }
    let main = dir.path().join(FILE_NAME);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    // 40-byte lines, 100-byte files: two lines per file; the newest two rotated files stay.
    assert_eq!(read(&main).lines().count(), 2);
    assert!(read(&main).starts_with("line 08"));
    assert!(read(&f.numbered(1)).starts_with("line 06"));
    assert!(read(&f.numbered(2)).starts_with("line 04"));
    assert!(!f.numbered(3).exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&main).unwrap().permissions().mode() & 0o777;
    // The umask may take bits away, never add them.
    assert_eq!(mode & !0o640, 0);
}

#[test]
fn json_lines_carry_the_chosen_fields_the_event_fields_and_the_static_ones() {
    let dir = tempfile::tempdir().unwrap();
    let l = log(
        "type: json\nformat: [asctime, {levelname: level}, message]\ndateformat: '%Y'\n\
         static_fields: {app: pgwarden, dc: east}\n",
    );
    let file = Arc::new(RotatingFile::open(dir.path(), 1 << 20, 1, None).unwrap());
    let sub = tracing_subscriber::fmt()
        .with_writer(Sink::File(file))
        .event_format(PatroniFormat {
            format: line_format(&l).unwrap(),
            dateformat: l.dateformat.clone(),
        })
        .finish();
    tracing::subscriber::with_default(sub, || {
        tracing::warn!(member = "a", lag = 5u64, "replica is lagging");
    });
    let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
    let v: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["level"], "WARNING");
    assert_eq!(v["message"], "replica is lagging");
    assert_eq!(v["member"], "a");
    assert_eq!(v["lag"], 5);
    assert_eq!(v["app"], "pgwarden");
    assert_eq!(v["dc"], "east");
    assert_eq!(v["asctime"].as_str().unwrap().len(), 4, "{v}");
    assert!(v.get("levelname").is_none());
}

#[test]
fn plain_format_strings_render_the_placeholders() {
    let dir = tempfile::tempdir().unwrap();
    let l = log("format: '%(levelname)s [%(name)s] %(message)s'\n");
    let file = Arc::new(RotatingFile::open(dir.path(), 1 << 20, 1, None).unwrap());
    let sub = tracing_subscriber::fmt()
        .with_writer(Sink::File(file))
        .event_format(PatroniFormat {
            format: line_format(&l).unwrap(),
            dateformat: None,
        })
        .finish();
    tracing::subscriber::with_default(sub, || {
        tracing::info!(target: "pgwarden::ha", tick = 3u64, "lock owner");
    });
    let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
    assert_eq!(text, "INFO [pgwarden::ha] lock owner tick=3\n");
}
