@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: 'f'
  location: 'westeurope'
  properties: {
    functionAppConfig: {
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
    }
  }
}
