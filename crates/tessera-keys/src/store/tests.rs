//! Unit tests of the [`KeyStore`]: both backings, sealing, the secrets document, and races between nodes.

use tessera_jose::{base64url, Algorithm};

use super::*;
use crate::{Activation, Change, KeyRing, RotationPolicy};

fn policy(alg: Algorithm) -> RotationPolicy {
    RotationPolicy { algorithm: alg, ..RotationPolicy::default() }
}

#[test]
fn keys_survive_a_reopen_and_sign_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (master, text) = MasterKey::generate().unwrap();
    let store = KeyStore::open(dir.path(), Some(master)).unwrap();
    for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
        store.update(|ring| ring.rotate(100, &policy(alg), Activation::Immediate)).unwrap();
    }
    let before = store.load().unwrap();
    let reopened = KeyStore::open(dir.path(), Some(MasterKey::parse(&text).unwrap())).unwrap().load().unwrap();
    let kids = |ring: &KeyRing| ring.keys().iter().map(|k| k.key.kid().to_owned()).collect::<Vec<_>>();
    assert_eq!(kids(&before), kids(&reopened));
    assert_eq!(reopened.keys().len(), 3);
    // Ed25519 and RSA signatures are deterministic: the same key signs the same bytes.
    let ed = |ring: &KeyRing| {
        ring.keys().iter().find(|k| k.key.algorithm() == Algorithm::EdDSA).unwrap().key.sign(b"m").unwrap()
    };
    assert_eq!(ed(&before), ed(&reopened));
}

#[test]
fn sealed_keys_need_the_right_master_key_and_are_not_in_the_file_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (master, _) = MasterKey::generate().unwrap();
    let store = KeyStore::open(dir.path(), Some(master)).unwrap();
    store.update(|ring| ring.rotate(1, &policy(Algorithm::EdDSA), Activation::Immediate)).unwrap();
    let der = store.load().unwrap().keys()[0].key.to_pkcs8().unwrap();
    let text = fs::read_to_string(store.path()).unwrap();
    assert!(text.contains("aes-256-gcm"));
    assert!(!text.contains(&base64url::encode(&der)), "the private key must not be stored in clear");

    let without = KeyStore::open(dir.path(), None).unwrap();
    assert!(matches!(without.load(), Err(KeyringError::MasterKeyRequired)));
    let wrong = KeyStore::open(dir.path(), Some(MasterKey::generate().unwrap().0)).unwrap();
    assert!(matches!(wrong.load(), Err(KeyringError::WrongMasterKey { .. })));
}

#[test]
fn an_unsealed_keyring_is_refused_with_a_master_key_until_sealed_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let plain = KeyStore::open(dir.path(), None).unwrap();
    plain.update(|ring| ring.maintain(1, &policy(Algorithm::EdDSA))).unwrap();
    plain.rs256().update(|ring| ring.maintain(1, &policy(Algorithm::RS256))).unwrap();
    let (secrets, _) = plain.load_secrets(&[REFRESH], 1, &policy(Algorithm::EdDSA)).unwrap();
    let kid = plain.load().unwrap().active(1).unwrap().kid().to_owned();
    let (master, _) = MasterKey::generate().unwrap();
    let sealed = KeyStore::open(dir.path(), Some(master)).unwrap();
    // Neither a read nor a write seals it in passing: the unsealed keyring could have been planted.
    for refused in [
        sealed.load().map(drop),
        sealed.rs256().load().map(drop),
        sealed.update(|ring| ring.maintain(2, &policy(Algorithm::EdDSA))).map(drop),
        sealed.load_secrets(&[REFRESH], 2, &policy(Algorithm::EdDSA)).map(drop),
    ] {
        let err = refused.unwrap_err();
        assert!(matches!(err, KeyringError::Unsealed { .. }) && err.is_integrity_failure(), "{err}");
        assert!(err.to_string().contains("tessera keys seal"), "{err}");
    }
    assert!(fs::read_to_string(dir.path().join(KEYRING.file)).unwrap().contains("\"none\""), "nothing written");

    let every_document = [KEYRING, RS256_KEYRING, SECRETS].map(|doc| dir.path().join(doc.file));
    assert_eq!(sealed.seal().unwrap(), every_document);
    assert!(sealed.rs256().load().is_ok());
    assert!(fs::read_to_string(sealed.path()).unwrap().contains("aes-256-gcm"));
    assert_eq!(sealed.load().unwrap().active(2).unwrap().kid(), kid, "the same keys, now sealed");
    let (after, _) = sealed.load_secrets(&[REFRESH], 2, &policy(Algorithm::EdDSA)).unwrap();
    assert_eq!(after[0].versions()[0].value(), secrets[0].versions()[0].value());
    assert!(sealed.seal().unwrap().is_empty(), "sealing twice changes nothing");
    assert!(matches!(plain.seal(), Err(KeyringError::MasterKeyRequired)));
}

#[test]
fn a_planted_unsealed_or_swapped_secret_is_refused_under_a_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let (master, _) = MasterKey::generate().unwrap();
    let store = KeyStore::open(dir.path(), Some(master)).unwrap();
    store.load_secrets(&[REFRESH, CSRF], 1, &policy(Algorithm::EdDSA)).unwrap();
    let path = dir.path().join(SECRETS_NAME);
    let genuine: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();

    // An attacker who can write the file but has no master key plants a MAC key of their own, in clear.
    let mut planted = genuine.clone();
    planted["secrets"][REFRESH]["versions"][0]["sealing"] = "none".into();
    planted["secrets"][REFRESH]["versions"][0]["value"] = base64url::encode([7u8; 32]).into();
    fs::write(&path, planted.to_string()).unwrap();
    let err = store.load_secrets(&[REFRESH, CSRF], 1, &policy(Algorithm::EdDSA)).unwrap_err();
    assert!(matches!(err, KeyringError::Unsealed { .. }), "{err}");
    assert!(!err.to_string().contains(&base64url::encode([7u8; 32])), "no secret in the message");

    // Sealed entries moved to another secret or another id do not open: the seal binds name and id.
    let mut swapped = genuine.clone();
    swapped["secrets"][REFRESH]["versions"][0]["value"] = genuine["secrets"][CSRF]["versions"][0]["value"].clone();
    let mut renumbered = genuine.clone();
    renumbered["secrets"][REFRESH]["versions"][0]["id"] = 9.into();
    for altered in [swapped, renumbered] {
        fs::write(&path, altered.to_string()).unwrap();
        let err = store.load_secrets(&[REFRESH, CSRF], 1, &policy(Algorithm::EdDSA)).unwrap_err();
        assert!(matches!(err, KeyringError::WrongMasterKey { .. }) && err.is_integrity_failure(), "{err}");
    }
    fs::write(&path, genuine.to_string()).unwrap();
    assert!(store.load_secrets(&[REFRESH, CSRF], 1, &policy(Algorithm::EdDSA)).is_ok());
}

#[test]
fn the_rs256_keyring_is_a_document_of_its_own_whose_keys_open_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let (master, text) = MasterKey::generate().unwrap();
    let store = KeyStore::open(dir.path(), Some(master)).unwrap();
    let eddsa = policy(Algorithm::EdDSA);
    store.load_maintained(1, &eddsa).unwrap();
    let (rs256, changes) = store.rs256().load_maintained(1, &eddsa.rs256().unwrap()).unwrap();
    assert_eq!(changes.len(), 1, "its first key, made by its own maintenance");
    let kid = rs256.active(1).unwrap().kid().to_owned();
    assert_eq!(rs256.active(1).unwrap().algorithm(), Algorithm::RS256);
    assert_eq!(store.load().unwrap().active(1).unwrap().algorithm(), Algorithm::EdDSA, "the signing keys unchanged");
    assert_eq!(store.rs256().path(), dir.path().join("keys-rs256.json"));
    let reopened = KeyStore::open(dir.path(), Some(MasterKey::parse(&text).unwrap())).unwrap();
    assert_eq!(reopened.rs256().load().unwrap().active(1).unwrap().kid(), kid);

    // Its sealed keys are bound to it: moved into the signing keyring, where they would sign access tokens,
    // they do not open.
    let signing_path = store.path();
    let mut signing: serde_json::Value = serde_json::from_str(&fs::read_to_string(&signing_path).unwrap()).unwrap();
    let moved: serde_json::Value = serde_json::from_str(&fs::read_to_string(store.rs256().path()).unwrap()).unwrap();
    signing["keys"] = moved["keys"].clone();
    fs::write(&signing_path, signing.to_string()).unwrap();
    let err = store.load().unwrap_err();
    assert!(matches!(err, KeyringError::WrongMasterKey { .. }) && err.is_integrity_failure(), "{err}");
}

#[test]
fn a_failed_change_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path(), None).unwrap();
    store.update(|ring| ring.maintain(1, &policy(Algorithm::EdDSA))).unwrap();
    let before = fs::read(store.path()).unwrap();
    store.update(|ring| ring.rotate(2, &policy(Algorithm::EdDSA), Activation::Scheduled)).unwrap();
    let after_rotate = fs::read(store.path()).unwrap();
    assert_ne!(before, after_rotate);
    let err = store.update(|ring| ring.rotate(3, &policy(Algorithm::EdDSA), Activation::Scheduled)).unwrap_err();
    assert!(matches!(err, KeyringError::RotationPending { .. }));
    assert_eq!(fs::read(store.path()).unwrap(), after_rotate);
}

const REFRESH: &str = "refresh-token-mac";
const CSRF: &str = "csrf-mac";

/// The value of the version of `name` that issues at `now`.
fn issuing(store: &KeyStore, name: &str, now: i64) -> [u8; 32] {
    let (rings, _) = store.load_secrets(&[name], now, &RotationPolicy::default()).unwrap();
    *rings[0].issuing_at(now).unwrap().value()
}

#[test]
fn secrets_are_created_once_and_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (master, text) = MasterKey::generate().unwrap();
    let store = KeyStore::open(dir.path(), Some(master)).unwrap();
    let first = issuing(&store, REFRESH, 1);
    assert_eq!(issuing(&store, REFRESH, 2), first);
    assert_ne!(issuing(&store, CSRF, 2), first);
    let again = KeyStore::open(dir.path(), Some(MasterKey::parse(&text).unwrap())).unwrap();
    assert_eq!(issuing(&again, REFRESH, 3), first);
    let stored = fs::read_to_string(dir.path().join(SECRETS_NAME)).unwrap();
    assert!(!stored.contains(&base64url::encode(first)), "sealed, not in clear");
    assert!(matches!(
        KeyStore::open(dir.path(), None).unwrap().load_secrets(&[REFRESH], 3, &RotationPolicy::default()),
        Err(KeyringError::MasterKeyRequired)
    ));
}

#[test]
fn secrets_rotate_on_schedule_and_on_demand_keeping_the_predecessor() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path(), Some(MasterKey::generate().unwrap().0)).unwrap();
    let p = RotationPolicy::default();
    let (rings, changes) = store.load_secrets(&[REFRESH, CSRF], 0, &p).unwrap();
    assert_eq!(changes.len(), 2, "a first version of each");
    let first = rings[0].issuing_at(0).unwrap().id;
    // Due a prepublication period before the interval ends: the successor is written, not yet issuing.
    let at = p.secrets_rotation_interval - p.secrets_prepublish;
    let (rings, changes) = store.load_secrets(&[REFRESH, CSRF], at, &p).unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(rings[0].issuing_at(at).unwrap().id, first);
    assert_eq!(rings[0].accepted(at).len(), 2);
    // On demand, at once: the scheduled successor issues now, its predecessor is still accepted.
    let changes = store.rotate_secrets(at + 1, &p, Activation::Immediate).unwrap();
    assert!(changes.iter().all(|c| matches!(c, Change::ActivatedNow { .. })), "{changes:?}");
    let (rings, changes) = store.load_secrets(&[REFRESH, CSRF], at + 1, &p).unwrap();
    assert!(changes.is_empty());
    assert_ne!(rings[0].issuing_at(at + 1).unwrap().id, first);
    assert!(rings[0].accepted(at + 1).iter().any(|version| version.id == first));
    assert!(matches!(
        store.rotate_secrets(at + 2, &p, Activation::Scheduled).and_then(|_| store.rotate_secrets(
            at + 3,
            &p,
            Activation::Scheduled
        )),
        Err(KeyringError::RotationPending { .. })
    ));
}

#[test]
fn a_secret_written_before_rotation_is_version_zero_and_stays_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (master, text) = MasterKey::generate().unwrap();
    let legacy_value = [5u8; 32];
    // secrets.json as the previous release wrote it: one value per name, sealed under the name alone.
    let sealed = master.seal(&format!("tessera-secret-v1|{REFRESH}"), &legacy_value).unwrap();
    let legacy =
        serde_json::json!({"secrets": {REFRESH: {"sealing": "aes-256-gcm", "value": base64url::encode(sealed)}}});
    fs::write(dir.path().join(SECRETS_NAME), legacy.to_string()).unwrap();
    let store = KeyStore::open(dir.path(), Some(master)).unwrap();
    let now = 1_800_000_000;
    let (rings, _) = store.load_secrets(&[REFRESH], now, &RotationPolicy::default()).unwrap();
    let zero = rings[0].versions().iter().find(|version| version.id == 0).unwrap();
    assert_eq!(zero.value(), &legacy_value);
    assert_eq!(rings[0].issuing_at(now).unwrap().id, 0, "it issues until its successor activates");
    assert!(rings[0].accepted(now + RotationPolicy::default().secrets_prepublish).iter().any(|v| v.id == 0));
    // Written back in the new form and still read the same.
    let again = KeyStore::open(dir.path(), Some(MasterKey::parse(&text).unwrap())).unwrap();
    let (rings, _) = again.load_secrets(&[REFRESH], now, &RotationPolicy::default()).unwrap();
    assert_eq!(rings[0].versions().iter().find(|version| version.id == 0).unwrap().value(), &legacy_value);
    assert!(fs::read_to_string(dir.path().join(SECRETS_NAME)).unwrap().contains("versions"));
}

#[test]
fn corrupt_files_are_named_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path(), None).unwrap();
    for (content, needle) in [
        ("not json", "keys.json"),
        (r#"{"format":2,"sealing":"none","keys":[]}"#, "format 2"),
        (
            r#"{"format":1,"sealing":"none","keys":[{"kid":"k","alg":"EdDSA","created_at":0,"activates_at":0,"private_key":"!!"}]}"#,
            "not base64url",
        ),
    ] {
        fs::write(store.path(), content).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains(needle), "{content}: {err}");
    }
}

/// A shared store in memory; `interfere` runs once, just before the first write, as another node would.
#[derive(Default)]
struct Memory {
    documents: std::sync::Mutex<std::collections::HashMap<String, (u64, String)>>,
    interfere: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory").field("documents", &self.documents).finish_non_exhaustive()
    }
}

impl Documents for Memory {
    fn read(&self, name: &str) -> Result<Option<(u64, String)>, KeyringError> {
        Ok(self.documents.lock().unwrap().get(name).cloned())
    }

    fn replace(&self, name: &str, expected: Option<u64>, contents: String) -> Result<bool, KeyringError> {
        let interference = self.interfere.lock().unwrap().take();
        if let Some(interfere) = interference {
            interfere();
        }
        let mut documents = self.documents.lock().unwrap();
        let current = documents.get(name).map(|(version, _)| *version);
        if current != expected {
            return Ok(false);
        }
        documents.insert(name.to_owned(), (current.unwrap_or(0) + 1, contents));
        Ok(true)
    }
}

#[test]
fn nodes_sharing_a_store_share_keys_and_secrets() {
    let memory = Arc::new(Memory::default());
    let (master, text) = MasterKey::generate().unwrap();
    let a = KeyStore::shared(memory.clone(), Some(master));
    let b = KeyStore::shared(memory.clone(), Some(MasterKey::parse(&text).unwrap()));
    assert_eq!(a.revision().unwrap(), Revision::Absent);
    let (ring, _) = a.load_maintained(1, &policy(Algorithm::ES256)).unwrap();
    let kid = ring.active(1).unwrap().kid().to_owned();
    assert_eq!(b.load().unwrap().active(1).unwrap().kid(), kid);
    assert_eq!(b.revision().unwrap(), Revision::Version(1));
    assert_eq!(issuing(&a, REFRESH, 1), issuing(&b, REFRESH, 1));
    let stored = memory.read("keyring").unwrap().unwrap().1;
    assert!(stored.contains("aes-256-gcm"), "sealed in the store as in a file");
    assert!(matches!(KeyStore::shared(memory, None).load(), Err(KeyringError::MasterKeyRequired)));
}

#[test]
fn a_change_racing_another_node_is_made_again_on_top_of_it() {
    let memory = Arc::new(Memory::default());
    let a = KeyStore::shared(memory.clone(), None);
    a.update(|ring| ring.maintain(1, &policy(Algorithm::EdDSA))).unwrap();
    // Node B rotates between A's read and A's write: A's write fails, and A rotates again on B's keyring.
    let b = KeyStore::shared(memory.clone(), None);
    *memory.interfere.lock().unwrap() = Some(Box::new(move || {
        b.update(|ring| ring.rotate(2, &policy(Algorithm::EdDSA), Activation::Scheduled)).unwrap();
    }));
    let mut attempts = 0;
    let outcome = a.update(|ring| {
        attempts += 1;
        ring.rotate(3, &policy(Algorithm::EdDSA), Activation::Immediate)
    });
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(attempts, 2, "the first attempt lost to B and was made again");
    let ring = a.load().unwrap();
    assert_eq!(ring.keys().len(), 2, "B's scheduled key was activated at once, not lost");
    assert_eq!(memory.read("keyring").unwrap().unwrap().0, 3);
}

#[test]
fn local_files_are_imported_once_into_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let files = KeyStore::open(dir.path(), None).unwrap();
    let (ring, _) = files.load_maintained(1, &policy(Algorithm::EdDSA)).unwrap();
    let (rs256, _) = files.rs256().load_maintained(1, &policy(Algorithm::RS256)).unwrap();
    let secret = issuing(&files, REFRESH, 1);
    let memory = Arc::new(Memory::default());
    let shared = KeyStore::shared(memory.clone(), None);
    assert_eq!(shared.import_files(dir.path()).unwrap(), vec![KEYRING.file, RS256_KEYRING.file, SECRETS_NAME]);
    assert_eq!(shared.load().unwrap().active(1).unwrap().kid(), ring.active(1).unwrap().kid());
    assert_eq!(shared.rs256().load().unwrap().active(1).unwrap().kid(), rs256.active(1).unwrap().kid());
    assert_eq!(issuing(&shared, REFRESH, 1), secret);
    // Another node's different files do not replace what the store already holds.
    let other = tempfile::tempdir().unwrap();
    KeyStore::open(other.path(), None).unwrap().load_maintained(1, &policy(Algorithm::EdDSA)).unwrap();
    assert!(shared.import_files(other.path()).unwrap().is_empty());
    assert_eq!(shared.load().unwrap().active(1).unwrap().kid(), ring.active(1).unwrap().kid());
}

#[cfg(unix)]
#[test]
fn the_keyring_is_readable_only_by_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = KeyStore::open(&data, None).unwrap();
    store.update(|ring| ring.maintain(1, &policy(Algorithm::EdDSA))).unwrap();
    store.rs256().update(|ring| ring.maintain(1, &policy(Algorithm::RS256))).unwrap();
    store.load_secrets(&[REFRESH], 1, &RotationPolicy::default()).unwrap();
    for file in [KEYRING.file, RS256_KEYRING.file, SECRETS_NAME, LOCK_NAME] {
        assert_eq!(fs::metadata(data.join(file)).unwrap().permissions().mode() & 0o777, 0o600, "{file}");
    }
    assert_eq!(fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
}
