"""The harness's Prefect API is a real server: a flow run is recorded there, not in a temporary one."""

from __future__ import annotations

import asyncio


def test_flow_runs_on_the_real_api(prefect_api):
    from prefect import flow, get_client

    @flow(name="smo-harness-check")
    def add(a: int, b: int) -> int:
        return a + b

    state = add(2, 3, return_state=True)
    assert state.is_completed() and state.result() == 5

    async def read():
        async with get_client() as c:
            assert str(c.api_url).rstrip("/") == prefect_api.rstrip("/")
            run = await c.read_flow_run(state.state_details.flow_run_id)
            return run.state.type.value

    assert asyncio.run(read()) == "COMPLETED"
