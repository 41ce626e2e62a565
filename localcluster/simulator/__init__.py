"""Simulator of Knative Serving 1.17's controllers, the Kourier gateway, the public nginx proxy and a
vLLM OpenAI-compatible server, for the local clusters where no container runs.

It honours their observable contract (status fields and reasons, URLs, HTTP behaviour) as
../shared/knative/NOTES.md describes it. Test and demo infrastructure only: knfleet's product code
talks to it exactly as it would to a real cluster.
"""
