// BAD: ranges outside the platform's, and a main param wider than the module's.
// expect: range site.bicep: site.functionAppConfig.scaleAndConcurrency.maximumInstanceCount takes param maximumInstanceCount (1..1000), not inside the platform's 40..1000
// expect: range site.bicep: site.functionAppConfig.scaleAndConcurrency.instanceMemoryMB = 1024, outside the platform's [512, 2048, 4096]
// expect: range site.bicep: queue.maxDeliveryCount = 0, outside the platform's 1..2000
// expect: range main.bicep: module site param retention (30..730) takes logRetention (1..3650)
targetScope = 'subscription'

@minValue(1)
@maxValue(3650)
param logRetention int = 30

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-app'
  location: 'westeurope'
}

module site 'app/site.bicep' = {
  name: 'site'
  scope: rg
  params: {
    retention: logRetention
  }
}
