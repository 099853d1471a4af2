"""The committed generated code in gateway/pb/ is what protos/ generates today."""

from __future__ import annotations

from pathlib import Path

from gateway import codegen


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    fresh = {p.name: p.read_text() for p in codegen.generate(tmp_path)}
    committed = {
        name: (codegen.PACKAGE_DIR / name).read_text()
        for name in fresh
        if (codegen.PACKAGE_DIR / name).exists()
    }
    stale = sorted(name for name in fresh if committed.get(name) != fresh[name])
    assert not stale, f"gateway/pb is stale for {stale}: run `make proto`"


def test_the_wire_contract_is_as_published() -> None:
    from gateway.pb import gateway_pb2

    service = gateway_pb2.DESCRIPTOR.services_by_name["EventGateway"]
    assert service.full_name == "eventgw.v1.EventGateway"
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert methods == {
        "SubmitBatch": (False, False),
        "SubmitStream": (True, True),
        "GetSubmission": (False, False),
    }
    fields = {f.name: f.number for f in gateway_pb2.SubmitBatchResponse.DESCRIPTOR.fields}
    assert fields == {"results": 1, "accepted": 2, "duplicates": 3, "rejected": 4, "replayed": 5}
    status = gateway_pb2.EventStatus
    assert [status.Name(v) for v in range(4)] == [
        "EVENT_STATUS_UNSPECIFIED",
        "EVENT_STATUS_ACCEPTED",
        "EVENT_STATUS_DUPLICATE",
        "EVENT_STATUS_REJECTED",
    ]
