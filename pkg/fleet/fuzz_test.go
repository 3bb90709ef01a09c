package fleet_test

import (
	"testing"
	"time"

	"github.com/jobfleet/jobfleet/pkg/fleet"
)

// FuzzParseEvent feeds the reaper's parser of outside input (events from
// EventBridge) arbitrary bytes: it must never panic, and an event it
// accepts must survive a Marshal/Parse round trip.
func FuzzParseEvent(f *testing.F) {
	code := 137
	f.Add(fleet.Event{WorkerID: "arn:aws:ecs:us-east-1:1:task/c/abc", LastStatus: "STOPPED", DesiredStatus: "STOPPED",
		StopCode: "EssentialContainerExited", ExitCode: &code, Version: 4, Time: time.Unix(1700000000, 0).UTC()}.Marshal())
	f.Add([]byte(`{"version":"0","detail-type":"ECS Task State Change","source":"aws.ecs","time":"2020-01-23T17:57:58Z","detail":{"taskArn":"t","lastStatus":"RUNNING","version":"x"}}`))
	f.Add([]byte(`{"detail-type":"ECS Task State Change","source":"aws.ecs","detail":{"taskArn":"t","lastStatus":"STOPPED","containers":[{"exitCode":-1}]}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := fleet.ParseEvent(b)
		if err != nil {
			return
		}
		if e.WorkerID == "" || e.LastStatus == "" {
			t.Fatalf("accepted an event without a worker or status: %q", b)
		}
		again, err := fleet.ParseEvent(e.Marshal())
		if err != nil {
			t.Fatalf("re-parse of %q: %v", e.Marshal(), err)
		}
		if again.WorkerID != e.WorkerID || again.LastStatus != e.LastStatus || again.StopCode != e.StopCode ||
			again.Version != e.Version || (again.ExitCode == nil) != (e.ExitCode == nil) {
			t.Fatalf("round trip changed the event: %+v → %+v", e, again)
		}
		_ = fleet.Classify(e)
	})
}
