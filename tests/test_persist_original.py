"""An import through ``POST /api/persist/listings`` records the SHA-256 and size of the body it received, which is
the original it keeps: the download matches the batch, and a re-import of it is the same import again."""

import hashlib
import json

from .server import running_server

BODY = (
    b'[{"canonical_model": "L40S", "vram_gb": 48, "mig_support": 0, "nvlink": false, "tdp_watts": 350,\n'
    b'  "price": 7500, "score": 0.6, "seller": "Apex", "import_id": null, "import_index": null},\n'
    b' {"canonical_model": "RTX_4090", "vram_gb": 24, "mig_support": 0, "nvlink": false, "tdp_watts": 450,\n'
    b'  "price": 1999.5, "score": 0.71, "import_id": null, "import_index": null}]\n'
)


def test_a_persisted_body_is_recorded_kept_and_reimported_as_received(db_path, tmp_path):
    sha256 = hashlib.sha256(BODY).hexdigest()
    config = {"allow_import": True, "upload_dir": str(tmp_path / "uploads"), "files_dir": str(tmp_path / "kept")}
    with running_server(db_path, plugin_config=config) as server:
        answer = server.request(
            "POST", "/api/persist/listings?source=old-client", body=BODY, headers={"Content-Type": "application/json"}
        )
        assert answer.status == 200, answer.text
        first = answer.json()
        assert (first["sha256"], first["bytes"], first["ignored_columns"]) == (sha256, len(BODY), [])
        import_id = first["import_id"]
        record = server.get(f"/api/imports/{import_id}").json()
        assert (record["sha256"], record["bytes"], record["file_kept"], record["file_bytes"]) == (
            sha256,
            len(BODY),
            True,
            len(BODY),
        )
        download = server.get(f"/api/imports/{import_id}/file")
        assert (download.status, download.body, download.headers["x-content-sha256"]) == (200, BODY, sha256)
        again = server.request(
            "POST", f"/api/imports/{import_id}/reimport", headers={"Content-Type": "application/json"}
        )
        assert again.status == 200, again.text
        second = again.json()
        assert (second["sha256"], second["bytes"], second["ignored_columns"], second["record_count"]) == (
            sha256,
            len(BODY),
            [],
            2,
        )
        assert second["previous_import_id"] == import_id
        rows = [server.get(f"/api/listings?import_id={i}").json() for i in (import_id, second["import_id"])]
        assert [[{k: v for k, v in r.items() if k != "import_id"} for r in side] for side in rows] == [
            [{k: v for k, v in r.items() if k != "import_id"} for r in rows[0]]
        ] * 2
        assert json.loads(BODY)[0]["seller"] == rows[1][0]["seller"]
