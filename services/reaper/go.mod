module github.com/jobfleet/jobfleet/services/reaper

go 1.26.0

require github.com/jobfleet/jobfleet/pkg v0.0.0

replace github.com/jobfleet/jobfleet/pkg => ../../pkg
