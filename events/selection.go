package events

import (
	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/multiline"
	"github.com/berthlog/berth/parse"
	"github.com/berthlog/berth/selection"
)

// reasonSelf is why berth's own container is excluded, as Status shows it.
const reasonSelf = "berth's own container"

// notLabels are the attributes Docker adds to a container event besides the
// container's labels (which it copies in): the rest are its labels.
var notLabels = map[string]bool{
	"name": true, "image": true, // every event
	"exitCode": true, "execDuration": true, // die
	"signal":  true, // kill
	"oldName": true, // rename
}

// labelsOf returns a container's labels from the attributes of one of its
// events. A label whose key is one of those Docker adds is lost; the next
// list of the containers (at every reconnect) gives the labels exactly.
func labelsOf(attrs map[string]string) map[string]string {
	labels := make(map[string]string, len(attrs))
	for k, v := range attrs {
		if !notLabels[k] {
			labels[k] = v
		}
	}
	return labels
}

// decide sets whether ct is collected, and why, from berth's own container
// ID and the selection's rules, and says what changed: at Info when the
// container becomes excluded or collected (a rename), once at Warn for a bad
// berth.enable, berth.multiline.*, berth.rate_limit or berth.parse label. A container
// that becomes excluded while a burst reads it has that burst ended at once
// (its lines up to then are delivered); transition then makes it excluded.
// One that becomes collected is read from where berth would have started it
// (its checkpoint, else its first line, or with initial_position end the
// time berth started) once it is stepped.
func (r *run) decide(ct *container) {
	d := selection.Decision{Reason: reasonSelf}
	if !r.exclude[ct.id] {
		d = r.rules.Decide(selection.Container{Name: ct.name, Image: ct.image, Labels: ct.labels})
	}
	first := ct.excludedBy == "" && ct.selectedBy == ""
	wasCollected := ct.excludedBy == ""
	oldReason := ct.excludedBy + ct.selectedBy
	if d.Collect {
		ct.excludedBy, ct.selectedBy = "", d.Reason
	} else {
		ct.excludedBy, ct.selectedBy = d.Reason, ""
	}
	labelError := d.LabelError
	if _, err := multiline.FromLabels(ct.labels, multiline.Spec{}); err != nil {
		// The collector falls back to the configured rule on its own.
		if labelError != "" {
			labelError += "; "
		}
		labelError += err.Error()
	}
	if _, _, err := collectors.RateLimitFromLabels(ct.labels); err != nil {
		// The collector applies the configured limit on its own.
		if labelError != "" {
			labelError += "; "
		}
		labelError += err.Error()
	}
	if _, err := parse.FromLabels(ct.labels, parse.None); err != nil {
		// The collector falls back to the configured format on its own.
		if labelError != "" {
			labelError += "; "
		}
		labelError += err.Error()
	}
	if labelError != ct.labelError {
		ct.labelError = labelError
		if labelError != "" {
			r.log.Warn("bad label on a container: "+labelError, "container", ct.name, "id", short(ct.id))
		}
	}
	switch {
	case first && d.Reason == reasonSelf:
		r.log.Info("berth runs in this container: its log is not collected", "container", ct.name, "id", short(ct.id))
	case first && !d.Collect:
		r.log.Debug("container not collected", "container", ct.name, "id", short(ct.id), "excluded_by", d.Reason)
	case first:
	case wasCollected && !d.Collect:
		r.log.Info("container no longer collected", "container", ct.name, "id", short(ct.id), "excluded_by", d.Reason)
		if ct.cancelBurst != nil {
			ct.cancelBurst()
		}
	case !wasCollected && d.Collect:
		r.log.Info("container now collected", "container", ct.name, "id", short(ct.id), "selected_by", d.Reason)
		if !ct.cursor.Threshold.IsZero() {
			// Where berth started it while it was excluded (see
			// reconcile); an existing checkpoint wins.
			r.checkpoints.Seed(ct.id, ct.cursor)
		}
	case oldReason != d.Reason:
		r.log.Debug("container selection changed", "container", ct.name, "id", short(ct.id), "reason", d.Reason)
	}
}
