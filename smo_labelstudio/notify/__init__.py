"""Notifications: Prefect automations that turn the line's events (a failed quality gate, a paused annotator, a
deadline at risk, a wellness cap, a failed flow run) into messages through a notification block the team
configures (`smo notify setup`, `smo notify test`)."""
