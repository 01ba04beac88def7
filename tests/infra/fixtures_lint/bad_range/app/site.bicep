@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@minValue(30)
@maxValue(730)
param retention int = 30

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: 'f'
  location: 'westeurope'
  properties: {
    functionAppConfig: {
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 1024
      }
    }
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  name: 'sb/q'
  properties: {
    maxDeliveryCount: 0
  }
}

resource log 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log'
  location: 'westeurope'
  properties: {
    retentionInDays: retention
  }
}
