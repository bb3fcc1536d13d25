package dnsx

// ServersForTest exposes the server list a lookup would use.
func (c *Client) ServersForTest() []string { return c.servers() }
