package profile

// WorkerBinary is the stock worker's file name; the local fleet runs it from
// beside the dispatcher's own binary unless JOBFLEET_WORKER_COMMAND says
// otherwise.
const WorkerBinary = "jobfleet-worker"
