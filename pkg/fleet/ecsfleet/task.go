package ecsfleet

import (
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/jobfleet/jobfleet/pkg/fleet"
)

// Attachment types of a task's network interface: DescribeTasks and RunTask
// say "ElasticNetworkInterface", task state change events say "eni".
const (
	attachmentENI      = "ElasticNetworkInterface"
	attachmentENIEvent = "eni"
	detailPrivateIPv4  = "privateIPv4Address"
)

// Family returns the task definition family named by a task definition
// reference: "family", "family:revision" or an ARN
// "arn:aws:ecs:region:account:task-definition/family:revision".
func Family(taskDef string) string {
	if i := strings.LastIndexByte(taskDef, '/'); i >= 0 {
		taskDef = taskDef[i+1:]
	}
	if i := strings.IndexByte(taskDef, ':'); i >= 0 {
		taskDef = taskDef[:i]
	}
	return taskDef
}

// worker maps an ECS task to a fleet.Worker; container is the worker
// container's name ("" when unknown).
func worker(t types.Task, container string) fleet.Worker {
	w := fleet.Worker{
		ID:            aws.ToString(t.TaskArn),
		LastStatus:    aws.ToString(t.LastStatus),
		DesiredStatus: aws.ToString(t.DesiredStatus),
		Health:        string(t.HealthStatus),
		Addr:          taskAddr(t),
		CreatedAt:     utc(t.CreatedAt),
		StartedAt:     utc(t.StartedAt),
		StoppedAt:     utc(t.StoppedAt),
		StopCode:      string(t.StopCode),
		Reason:        aws.ToString(t.StoppedReason),
	}
	// The container that tells why: the worker's (by name) when it has an
	// exit code, else the first that exited non-zero, else the first with
	// an exit code.
	var pick *types.Container
	for i := range t.Containers {
		c := &t.Containers[i]
		if c.ExitCode == nil {
			continue
		}
		if container != "" && aws.ToString(c.Name) == container {
			pick = c
			break
		}
		if pick == nil || (*pick.ExitCode == 0 && *c.ExitCode != 0) {
			pick = c
		}
	}
	if pick != nil {
		code := int(*pick.ExitCode)
		w.ExitCode, w.ContainerReason = &code, aws.ToString(pick.Reason)
	}
	return w
}

func utc(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// taskAddr is the task's private IPv4 address: from its network interface
// attachment's details, else from a container's network interface.
func taskAddr(t types.Task) string {
	for _, a := range t.Attachments {
		switch aws.ToString(a.Type) {
		case attachmentENI, attachmentENIEvent:
		default:
			continue
		}
		for _, d := range a.Details {
			if aws.ToString(d.Name) == detailPrivateIPv4 && aws.ToString(d.Value) != "" {
				return aws.ToString(d.Value)
			}
		}
	}
	for _, c := range t.Containers {
		for _, ni := range c.NetworkInterfaces {
			if ip := aws.ToString(ni.PrivateIpv4Address); ip != "" {
				return ip
			}
		}
	}
	return ""
}
