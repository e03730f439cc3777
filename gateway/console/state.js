// What every page shares: the ARCP session, what is known of each job, the agent
// inventory, and the two actions a job offers anywhere (cancel, run again).

import { apiGet } from "./api.js";
import { JobRecord } from "./jobs.js";

export const app = {
  session: null,
  jobs: new Map(), // job id -> JobRecord
  agents: [],
  timers: [],
  render: () => {}, // the current page's reaction to a frame
};

export function record(jobId) {
  let job = app.jobs.get(jobId);
  if (!job) {
    job = new JobRecord(jobId);
    app.jobs.set(jobId, job);
  }
  return job;
}

/** Cancel a job of this principal. One submitted in this session is cancelled over
 * ARCP (`job.cancel`, §7.4); any other (another tab, the CLI, a backend) through
 * the core's CancelJob, which lets the submitting principal. */
export async function cancelJob(job, reason = "cancelled from the console") {
  if (job.own) {
    await app.session.request("job.cancel", { job_id: job.jobId, reason });
  } else {
    await apiGet("cancel", { id: job.jobId, reason });
  }
}

/** Submit the job again with the same agent version, input, lease and limit (§7.1);
 * resolves with the new job id. Needs the input, which only its owner can read. */
export async function runAgain(job) {
  const payload = { agent: job.agent, input: job.input };
  if (job.lease && Object.keys(job.lease).length) payload.lease_request = job.lease;
  if (job.maxRuntimeSec) payload.max_runtime_sec = job.maxRuntimeSec;
  const accepted = await app.session.request("job.submit", payload);
  const fresh = record(accepted.payload.job_id);
  fresh.own = true;
  fresh.describe(accepted.payload);
  return accepted.payload.job_id;
}

/** Read a job's facts from the core (input, limits, times, outcome) into its record. */
export async function fetchJob(job) {
  const { job: entry, outcome } = await apiGet("job", { id: job.jobId });
  job.describe(entry);
  if (outcome && !job.result && !job.error) job.finish(outcome.type, outcome.payload);
  return job;
}
