package platform

// LoseDeviceEventsForTest stops this process hearing of device changes, as if every
// change event were lost: cached device lists then go stale until their TTL.
func (p *Platform) LoseDeviceEventsForTest() {
	p.changes.Unsubscribe()
	p.consumer.Stop()
}

// StopDirectoryForTest stops the auth service answering device-list requests, as in an
// outage of the auth service seen from messaging.
func (p *Platform) StopDirectoryForTest() { p.dirSub.Unsubscribe() }
